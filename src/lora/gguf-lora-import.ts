import { basename } from "node:path";
import { readGgufFile, readTensorAsFloat32 } from "../gguf/gguf-reader.js";
import type { GgufFile, GgufMetadataValue, GgufTensorInfo } from "../gguf/gguf-types.js";
import { unpermuteRowsForRope } from "../model/llama-permute.js";
import type { Adapter, LoraModule } from "./adapter.js";
import type { AdapterConfig } from "./adapter-config.js";
import { ARCHITECTURES, moduleOfBaseTensor, ropePermutationHeads, SUPPORTED_ARCHITECTURES } from "./architectures.js";
import { ggufArchitecture } from "./base-fingerprint.js";
import { LoraError } from "./errors.js";
import { validateGgufLoraHeader } from "./gguf-lora-validate.js";
import { baseFingerprintRecord, convertedAdapter, type ImportOptions, type ImportSummary, recoverLoriStructure } from "./peft-import.js";

/**
 * Imports a GGUF LoRA (what llama.cpp's convert_lora_to_gguf.py and our `export --format gguf` write) for a base
 * GGUF: `general.type = adapter`, `adapter.type = lora`, a float32 `adapter.lora.alpha`, and pairs
 * `<base tensor>.lora_a` (ne [in, r], i.e. PEFT A [r, in]) / `.lora_b` (ne [r, out], PEFT B [out, r]) in F32,
 * F16, BF16 or Q8_0. llama.cpp scales each pair by alpha / r, which is exactly a PEFT module with that alpha and
 * rank, so A and B are taken as they are; only the q/k B rows of architectures whose conversion rope-permuted
 * the base (llama) are permuted back to HF order, our format's convention. An F32 file exported by us
 * therefore re-imports bit for bit.
 *
 * Refused, each in one message listing every problem, before anything is returned: a file that is a model and
 * not an adapter, another adapter type, an activated LoRA (aLoRA invocation tokens: llama.cpp applies it only
 * after those tokens, which a plain adapter cannot express), a missing alpha (llama.cpp then ignores r, so the
 * scale the author meant is unknown), another architecture or one outside the table, tensors that are not
 * projections we adapt, and pairs that do not fit the base (gguf-lora-validate.ts), NaN/Inf values.
 */

const MAX_LISTED = 20;

function fail(file: string, problems: readonly string[], code: "GGUF_LORA_INVALID" | "ADAPTER_UNSUPPORTED"): never {
  const shown = problems.slice(0, MAX_LISTED).join("; ");
  const more = problems.length > MAX_LISTED ? ` (and ${problems.length - MAX_LISTED} more)` : "";
  throw new LoraError(code, `${file}: cannot import: ${shown}${more}`);
}

const stringOf = (value: GgufMetadataValue | undefined): string | undefined =>
  value && value.type === "string" && typeof value.value === "string" ? value.value : undefined;

/** The metadata checks; returns alpha. */
function checkAdapterMetadata(file: string, lora: GgufFile, baseHeader: GgufFile): number {
  const type = stringOf(lora.metadata.get("general.type"));
  const looksLikeModel = lora.tensors.some((t) => !/\.lora_[ab]$/.test(t.name));
  if (type !== "adapter" && (type !== undefined || looksLikeModel)) {
    fail(file, [`it is a model (general.type '${type ?? "model"}'), not a LoRA adapter`], "ADAPTER_UNSUPPORTED");
  }
  const problems: string[] = [];
  if (type === undefined) problems.push("missing metadata 'general.type' (expected 'adapter')");
  const adapterType = stringOf(lora.metadata.get("adapter.type"));
  if (adapterType !== "lora") {
    problems.push(
      adapterType === undefined
        ? "missing metadata 'adapter.type' (expected 'lora')"
        : `adapter.type is '${adapterType}', only 'lora' adapters can be imported`,
    );
  }
  if (lora.metadata.has("adapter.alora.invocation_tokens")) {
    problems.push(
      "it is an activated LoRA (adapter.alora.invocation_tokens), which applies only after its invocation tokens: not supported",
    );
  }
  const alphaValue = lora.metadata.get("adapter.lora.alpha");
  let alpha = Number.NaN;
  if (alphaValue === undefined) {
    problems.push("missing metadata 'adapter.lora.alpha' (without it llama.cpp ignores the rank, so the intended scale is unknown)");
  } else if (alphaValue.type !== "float32" || typeof alphaValue.value !== "number") {
    problems.push(`metadata 'adapter.lora.alpha' must be float32, found ${alphaValue.type}`);
  } else if (!Number.isFinite(alphaValue.value) || alphaValue.value === 0) {
    problems.push(`metadata 'adapter.lora.alpha' is ${alphaValue.value}`);
  } else {
    alpha = alphaValue.value;
  }
  const loraArch = stringOf(lora.metadata.get("general.architecture"));
  const baseArch = ggufArchitecture(baseHeader);
  if (loraArch === undefined) problems.push("missing metadata 'general.architecture'");
  else if (loraArch !== baseArch) problems.push(`the adapter is for architecture '${loraArch}', the base is '${baseArch}'`);
  else if (!ARCHITECTURES.has(baseArch)) {
    problems.push(`the base model's architecture is '${baseArch}'; import supports ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  if (problems.length > 0) fail(file, problems, "ADAPTER_UNSUPPORTED");
  return alpha;
}

function countNonFinite(values: Float32Array): number {
  let n = 0;
  for (const v of values) if (!Number.isFinite(v)) n++;
  return n;
}

/** Reads, checks and converts the GGUF LoRA at `path` for `baseHeader`. Nothing is written. */
export async function importGgufLora(
  path: string,
  baseHeader: GgufFile,
  options: ImportOptions = {},
): Promise<{ adapter: Adapter; summary: ImportSummary }> {
  const file = basename(path);
  let lora: GgufFile;
  try {
    lora = await readGgufFile(path);
  } catch (error) {
    throw new LoraError("GGUF_LORA_INVALID", `${file}: cannot import: ${(error as Error).message.replace(`${path}: `, "")}`);
  }
  const alpha = checkAdapterMetadata(file, lora, baseHeader);
  const summary = validateGgufLoraHeader(lora, baseHeader, `${file}: cannot import`);
  const layout = ARCHITECTURES.get(summary.architecture)!;

  const problems: string[] = [];
  const pairs: Array<{ layer: number; module: LoraModule["module"]; a: GgufTensorInfo; b: GgufTensorInfo }> = [];
  const byName = new Map(lora.tensors.map((t) => [t.name, t]));
  for (const baseName of summary.ranks.keys()) {
    const target = moduleOfBaseTensor(layout, baseName);
    if (!target) {
      problems.push(
        `'${baseName}' is not a projection adapters can target on ${layout.architecture} (${Object.keys(layout.modules).join(", ")})`,
      );
      continue;
    }
    pairs.push({ ...target, a: byName.get(`${baseName}.lora_a`)!, b: byName.get(`${baseName}.lora_b`)! });
  }
  if (problems.length > 0) fail(file, problems, "ADAPTER_UNSUPPORTED");

  const modules: LoraModule[] = [];
  for (const { layer, module, a, b } of pairs) {
    const [inFeatures, rank] = a.shape as [number, number];
    const outFeatures = b.shape[1]!;
    const aData = await readTensorAsFloat32(path, a);
    let bData = await readTensorAsFloat32(path, b);
    const heads = ropePermutationHeads(layout, baseHeader, layer, module);
    if (heads !== null) bData = unpermuteRowsForRope(bData, outFeatures, rank, heads);
    const bad = countNonFinite(aData) + countNonFinite(bData);
    if (bad > 0) problems.push(`layer ${layer} ${module}: ${bad} NaN/Inf values`);
    modules.push({ layer, module, rank, alpha, inFeatures, outFeatures, a: { kind: "dense", data: aData }, b: bData });
  }
  if (problems.length > 0) fail(file, problems, "GGUF_LORA_INVALID");

  const config: AdapterConfig = {
    peft_type: "LORA",
    r: modules[0]!.rank,
    lora_alpha: alpha,
    target_modules: [],
    base_model_name_or_path: null,
    rank_pattern: {},
    alpha_pattern: {},
    use_rslora: false,
    use_dora: false,
    task_type: "CAUSAL_LM",
  };
  const recovered = recoverLoriStructure(config, modules, options);
  const adapter = convertedAdapter(config, recovered.modules, recovered.summary, file, baseFingerprintRecord(baseHeader), "gguf");
  return { adapter, summary: recovered.summary };
}
