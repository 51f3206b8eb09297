import type { GgufFile } from "../../gguf/gguf-types.js";
import { moduleScale, type Adapter } from "../../lora/adapter.js";
import { parseAdapterBytes, readAdapterSnapshot, type AdapterSnapshot } from "../../lora/adapter-io.js";
import type { AdapterConfig } from "../../lora/adapter-config.js";
import type { BaseFingerprint } from "../../lora/base-fingerprint.js";
import { LoraError } from "../../lora/errors.js";
import { GGUF_TENSOR_STEM } from "../../lora/target-modules.js";

/**
 * The one check every adapter passes before anyone can see it, whatever brought it in: the directory poller,
 * registration by path, a multipart upload, a merge's output, or files `train` wrote into the store. It reads
 * the two files once (regular files only, no symlinks, size-bounded), parses them, and then checks what the
 * parser alone does not: every value finite, ranks and alphas plausible, and the shapes fitting at least one
 * served base model (its base fingerprint too, when the adapter records one). What it returns carries the
 * bytes' hash, so the registry's identity of an adapter is exactly the bytes that were validated.
 */

/** A served base model as the store sees it: its GGUF header and fingerprint. */
export interface AdapterBase {
  readonly id: string;
  readonly header: GgufFile;
  readonly fingerprint: BaseFingerprint;
}

export interface ValidatedAdapter {
  readonly snapshot: AdapterSnapshot;
  readonly adapter: Adapter;
  readonly config: AdapterConfig;
  /** sha256 of the served bases this adapter fits (all of them when no bases are known). */
  readonly bases: readonly string[];
}

export interface AdapterValidationOptions {
  /** The served bases; an adapter must fit one. Undefined: structural checks only (tools without a model). */
  readonly bases?: readonly AdapterBase[];
  readonly maxWeightsBytes?: number;
}

/** |alpha| past this is not a trained adapter (PEFT's are r..4r, r at most a few thousand). */
export const MAX_ABS_ALPHA = 1e4;
/**
 * |value| past this (A as stored, B times its module's scale) is not a trained adapter: trained LoRA values
 * are O(1) and below, and a product this large overflows half-precision activations (65504) on the first
 * token. It also keeps every compiled value far inside float32's range.
 */
export const MAX_ABS_SCALED_VALUE = 1e6;

function bad(where: string, detail: string): never {
  throw new LoraError("ADAPTER_BAD_TENSORS", `${where}: ${detail}`);
}

function maxAbsFinite(values: Float32Array, where: string, what: string): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) bad(where, `${what} holds a non-finite value (${v}) at index ${i}`);
    const a = Math.abs(v);
    if (a > max) max = a;
  }
  return max;
}

/** Values finite and plausible, rank and alpha plausible. */
export function checkAdapterValues(adapter: Adapter, where: string): void {
  for (const m of adapter.modules) {
    const at = `${where}: layer ${m.layer} ${m.module}`;
    if (m.rank > Math.min(m.inFeatures, m.outFeatures))
      bad(at, `rank ${m.rank} exceeds min(in, out) = ${Math.min(m.inFeatures, m.outFeatures)}`);
    if (!Number.isFinite(m.alpha) || Math.abs(m.alpha) > MAX_ABS_ALPHA)
      bad(at, `lora_alpha ${m.alpha} is outside [-${MAX_ABS_ALPHA}, ${MAX_ABS_ALPHA}]`);
    if (m.a.kind === "dense" && maxAbsFinite(m.a.data, at, "lora_A") > MAX_ABS_SCALED_VALUE)
      bad(at, `lora_A holds values above ${MAX_ABS_SCALED_VALUE}`);
    const scaled = maxAbsFinite(m.b, at, "lora_B") * Math.abs(moduleScale(m, adapter.config.use_rslora));
    if (!(scaled <= MAX_ABS_SCALED_VALUE))
      bad(at, `lora_B times its scale (alpha / r) reaches ${scaled.toPrecision(3)}, above ${MAX_ABS_SCALED_VALUE}`);
  }
}

/** Why the adapter does not fit `base`, or null when it does. */
export function baseMismatch(adapter: Adapter, base: AdapterBase): string | null {
  const recorded = adapter.config.lori?.base_fingerprint;
  if (recorded) {
    if (recorded.architecture !== base.fingerprint.architecture) {
      return `built for architecture '${recorded.architecture}', model '${base.id}' is '${base.fingerprint.architecture}'`;
    }
    if (recorded.sha256 !== base.fingerprint.sha256) return `built for a different base model than '${base.id}' (base_fingerprint differs)`;
  }
  const tensors = new Map(base.header.tensors.map((t) => [t.name, t.shape]));
  for (const m of adapter.modules) {
    const name = `blk.${m.layer}.${GGUF_TENSOR_STEM[m.module]}.weight`;
    const shape = tensors.get(name);
    if (!shape) return `layer ${m.layer} ${m.module} does not exist in model '${base.id}'`;
    if (shape.length !== 2 || shape[0] !== m.inFeatures || shape[1] !== m.outFeatures) {
      return `layer ${m.layer} ${m.module} is [${m.outFeatures}x${m.inFeatures}], model '${base.id}' has [${[...shape].reverse().join("x")}]`;
    }
  }
  return null;
}

/** The served bases the adapter fits; throws ADAPTER_NO_BASE naming why when it fits none. */
export function fittingBases(adapter: Adapter, bases: readonly AdapterBase[] | undefined, where: string): string[] {
  if (bases === undefined) return [];
  const reasons: string[] = [];
  const fits: string[] = [];
  for (const base of bases) {
    const why = baseMismatch(adapter, base);
    if (why === null) fits.push(base.fingerprint.sha256);
    else reasons.push(why);
  }
  if (fits.length === 0) {
    const detail = reasons.length > 0 ? reasons.slice(0, 3).join("; ") : "no model is served";
    throw new LoraError("ADAPTER_NO_BASE", `${where}: fits none of the served models: ${detail}`);
  }
  return fits;
}

/** Validates bytes already read (a snapshot); `where` names the adapter in messages (never a server path). */
export async function validateAdapterSnapshot(
  snapshot: AdapterSnapshot,
  where: string,
  options: AdapterValidationOptions,
): Promise<ValidatedAdapter> {
  const adapter = await parseAdapterBytes(snapshot.configBytes, snapshot.weightsBytes, where);
  checkAdapterValues(adapter, where);
  const bases = fittingBases(adapter, options.bases, where);
  return { snapshot, adapter, config: adapter.config, bases };
}

/** Reads (no symlinks, regular files, bounded) and validates an adapter directory. */
export async function validateAdapterDir(dir: string, where: string, options: AdapterValidationOptions): Promise<ValidatedAdapter> {
  const snapshot = await readAdapterSnapshot(dir, {
    followSymlinks: false,
    ...(options.maxWeightsBytes !== undefined ? { maxWeightsBytes: options.maxWeightsBytes } : {}),
  });
  return validateAdapterSnapshot(snapshot, where, options);
}
