import type { BaseFingerprint } from "./base-fingerprint.js";
import { LORI_FORMAT_VERSION, type AdapterConfig, type LoriSection, type LoriVariant } from "./adapter-config.js";
import { LoraError } from "./errors.js";
import { hasCleanPadding, maskBit, maskPopcount } from "./mask.js";
import { generateSeededA } from "./seeded-a.js";
import { MODULE_ID, MODULE_PARENT, type TargetModule } from "./target-modules.js";

/**
 * The in-memory adapter. Modules are the source of truth for ranks, alphas, targets and A seeds; the config
 * carries everything else (base model, lineage, training info) and its rank fields are re-derived on write.
 */

/** A as stored ([rank, in] row-major, PEFT layout) or as a seed to regenerate it from (seeded-a.ts). */
export type LoraA = { readonly kind: "dense"; readonly data: Float32Array } | { readonly kind: "seeded"; readonly seed: number };

export interface LoraModule {
  readonly layer: number;
  readonly module: TargetModule;
  readonly rank: number;
  readonly alpha: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly a: LoraA;
  /** [outFeatures, rank] row-major (PEFT lora_B). */
  readonly b: Float32Array;
  /** LoRI-S: bit-packed [outFeatures, rank] mask (mask.ts); B is zero wherever the bit is clear. */
  readonly mask?: Uint8Array;
  /**
   * DoRA: the magnitude m of each output row ([outFeatures], PEFT lora_magnitude_vector, HF row order). The
   * adapted weight is m * (W + s B A) / ||W + s B A|| per row: not a LoRA (src/lora/dora.ts).
   */
  readonly magnitude?: Float32Array;
}

export interface Adapter {
  readonly config: AdapterConfig;
  readonly modules: readonly LoraModule[];
}

export function moduleKey(layer: number, module: TargetModule): string {
  return `${layer}.${module}`;
}

/** The module's name inside the HF model, as PEFT's rank_pattern/alpha_pattern keys see it. */
export function hfModuleName(layer: number, module: TargetModule): string {
  return `model.layers.${layer}.${MODULE_PARENT[module]}.${module}`;
}

/** The factor PEFT applies to B A: alpha / r, or alpha / sqrt(r) under rsLoRA. */
export function moduleScale(m: Pick<LoraModule, "alpha" | "rank">, useRslora: boolean): number {
  return m.alpha / (useRslora ? Math.sqrt(m.rank) : m.rank);
}

export function materializeA(m: LoraModule): Float32Array {
  if (m.a.kind === "dense") return m.a.data;
  return generateSeededA({ seed: m.a.seed, layer: m.layer, module: m.module, rank: m.rank, inFeatures: m.inFeatures });
}

/** Modules in file order: by layer, then q, k, v, o, gate, up, down. */
export function sortModules<T extends Pick<LoraModule, "layer" | "module">>(modules: readonly T[]): T[] {
  return [...modules].sort((x, y) => x.layer - y.layer || MODULE_ID[x.module] - MODULE_ID[y.module]);
}

/** Checks shapes, the mask's size and padding, and that B is zero outside the mask. */
export function validateModule(m: LoraModule): void {
  const where = `layer ${m.layer} ${m.module}`;
  const bad = (detail: string): never => {
    throw new LoraError("ADAPTER_BAD_TENSORS", `${where}: ${detail}`);
  };
  for (const [name, v] of [
    ["rank", m.rank],
    ["inFeatures", m.inFeatures],
    ["outFeatures", m.outFeatures],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) bad(`${name} must be a positive integer, got ${v}`);
  }
  if (!Number.isFinite(m.alpha)) bad(`alpha must be finite, got ${m.alpha}`);
  if (m.a.kind === "dense" && m.a.data.length !== m.rank * m.inFeatures) {
    bad(`A has ${m.a.data.length} values, expected rank*in = ${m.rank * m.inFeatures}`);
  }
  if (m.b.length !== m.outFeatures * m.rank) bad(`B has ${m.b.length} values, expected out*rank = ${m.outFeatures * m.rank}`);
  if (m.magnitude) {
    if (m.magnitude.length !== m.outFeatures) bad(`the magnitude vector has ${m.magnitude.length} values, expected out = ${m.outFeatures}`);
    if (!m.magnitude.every(Number.isFinite)) bad("the magnitude vector has a non-finite value");
    if (m.mask) bad("a DoRA module cannot have a sparse (masked) B");
  }
  if (m.mask) {
    if (!hasCleanPadding(m.mask, m.b.length)) bad("mask has the wrong byte length or set padding bits");
    for (let i = 0; i < m.b.length; i++) {
      if (m.b[i] !== 0 && !maskBit(m.mask, i)) bad(`B[${Math.floor(i / m.rank)}, ${i % m.rank}] is non-zero outside the mask`);
    }
  }
}

/** Most frequent value (ties: the first seen), for choosing PEFT's global r / lora_alpha. */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!;
  for (const [v, n] of counts) if (n > counts.get(best)!) best = v;
  return best;
}

export interface AdapterOptions {
  readonly useRslora?: boolean;
  readonly variant?: LoriVariant;
  readonly baseModel?: string | null;
  readonly baseFingerprint?: BaseFingerprint | null;
  readonly lineage?: readonly { op: string; [k: string]: unknown }[];
  readonly training?: Record<string, unknown> | null;
  readonly taskType?: string | null;
}

function inferVariant(modules: readonly LoraModule[]): LoriVariant {
  if (modules.some((m) => m.magnitude)) return "dora";
  if (modules.every((m) => m.mask)) return "lori-s";
  if (modules.every((m) => m.a.kind === "seeded")) return "lori-d";
  return "lora";
}

/**
 * Re-derives the config fields that follow from the modules (r, lora_alpha, rank/alpha patterns,
 * target_modules, lori.a_init, lori.sparsity), keeping everything else from `config`. Seeded modules must
 * share one seed: the config records only one (adapter-io materialises strays before writing).
 */
export function deriveConfig(config: AdapterConfig, modules: readonly LoraModule[]): AdapterConfig {
  if (modules.length === 0) throw new LoraError("ADAPTER_BAD_TENSORS", "an adapter needs at least one module");
  const seeds = new Set(modules.flatMap((m) => (m.a.kind === "seeded" ? [m.a.seed] : [])));
  if (seeds.size > 1) throw new LoraError("ADAPTER_BAD_TENSORS", `seeded modules use ${seeds.size} different seeds; one is allowed`);
  const r = mode(modules.map((m) => m.rank));
  const alpha = mode(modules.map((m) => m.alpha));
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const m of sortModules(modules)) {
    if (m.rank !== r) rankPattern[hfModuleName(m.layer, m.module)] = m.rank;
    if (m.alpha !== alpha) alphaPattern[hfModuleName(m.layer, m.module)] = m.alpha;
  }
  const masked = modules.every((m) => m.mask);
  const total = modules.reduce((n, m) => n + m.b.length, 0);
  const kept = masked ? modules.reduce((n, m) => n + maskPopcount(m.mask!, m.b.length), 0) : total;
  const dora = modules.filter((m) => m.magnitude).length;
  if (dora !== 0 && dora !== modules.length) {
    throw new LoraError("ADAPTER_BAD_TENSORS", `${dora} of ${modules.length} modules have a DoRA magnitude vector; all or none must`);
  }
  const [seed] = seeds;
  const previous = config.lori;
  return {
    ...config,
    r,
    lora_alpha: alpha,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    target_modules: [...new Set(sortModules(modules).map((m) => m.module))],
    use_dora: dora !== 0,
    lori: {
      ...previous,
      format_version: LORI_FORMAT_VERSION,
      variant: previous?.variant ?? inferVariant(modules),
      sparsity: total === 0 ? 0 : 1 - kept / total,
      a_init: seed === undefined ? null : { prng: "philox4x32-10", seed, distribution: "kaiming-uniform" },
      base_fingerprint: previous?.base_fingerprint ?? null,
      lineage: previous?.lineage ?? [],
      training: previous?.training ?? null,
    },
  };
}

function copyFingerprint(fp: BaseFingerprint): NonNullable<LoriSection["base_fingerprint"]> {
  const tensors = Object.fromEntries(Object.entries(fp.tensors).map(([name, shape]) => [name, [...shape]]));
  return { architecture: fp.architecture, tensors, sha256: fp.sha256 };
}

/** Builds an adapter (config derived from the modules) after validating every module. */
export function makeAdapter(modules: readonly LoraModule[], options: AdapterOptions = {}): Adapter {
  modules.forEach(validateModule);
  const keys = new Set(modules.map((m) => moduleKey(m.layer, m.module)));
  if (keys.size !== modules.length) throw new LoraError("ADAPTER_BAD_TENSORS", "an adapter lists the same module twice");
  const sorted = sortModules(modules);
  const seed: AdapterConfig = {
    peft_type: "LORA",
    r: 1,
    lora_alpha: 1,
    target_modules: [],
    base_model_name_or_path: options.baseModel ?? null,
    rank_pattern: {},
    alpha_pattern: {},
    use_rslora: options.useRslora ?? false,
    use_dora: false,
    task_type: options.taskType ?? "CAUSAL_LM",
    lori: {
      format_version: LORI_FORMAT_VERSION,
      variant: options.variant ?? inferVariant(sorted),
      sparsity: 0,
      a_init: null,
      base_fingerprint: options.baseFingerprint ? copyFingerprint(options.baseFingerprint) : null,
      lineage: options.lineage ? options.lineage.map((l) => ({ ...l })) : [],
      training: options.training ?? null,
    },
  };
  return { config: deriveConfig(seed, sorted), modules: sorted };
}
