import { readGgufFile } from "../gguf/gguf-reader.js";
import type { GgufFile, GgufMetadataValue, GgufTensorInfo } from "../gguf/gguf-types.js";
import { LoraError } from "./errors.js";

/**
 * Checks a GGUF LoRA against its base before llama.cpp sees it. llama.cpp reads adapter metadata with
 * typed getters that assert on the type (gguf_get_val_f32 / _str): a wrongly typed `adapter.lora.alpha` or
 * `general.type` aborts the whole Node process instead of throwing, so every such check happens here first.
 * The shape rules mirror llama_adapter_lora_init_impl (llama.cpp src/llama-adapter.cpp, bundled commit).
 */

export interface GgufLoraSummary {
  /** null when absent: llama.cpp then applies the user scale without alpha / r. */
  readonly alpha: number | null;
  readonly architecture: string;
  /** Base tensor name -> rank of its pair. */
  readonly ranks: ReadonlyMap<string, number>;
}

/** Tensor types llama.cpp multiplies LoRA pairs in without precision surprises (Q8_0 needs ne[0] % 32 == 0). */
const ALLOWED_TYPES = new Set(["F32", "F16", "BF16", "Q8_0"]);

function stringValue(value: GgufMetadataValue | undefined): string | undefined {
  return value && value.type === "string" && typeof value.value === "string" ? value.value : undefined;
}

/** Checks the metadata keys llama.cpp reads with asserting getters; returns alpha and architecture. */
function checkMetadata(lora: GgufFile, base: GgufFile, problems: string[]): { alpha: number | null; architecture: string } {
  const requireString = (key: string, expected?: string): string => {
    const value = lora.metadata.get(key);
    const text = stringValue(value);
    if (value === undefined) problems.push(`missing metadata '${key}'`);
    else if (text === undefined) problems.push(`metadata '${key}' must be a string, found ${value.type}`);
    else if (expected !== undefined && text !== expected) problems.push(`metadata '${key}' is '${text}', expected '${expected}'`);
    return text ?? "";
  };
  requireString("general.type", "adapter");
  requireString("adapter.type", "lora");
  const baseArch = stringValue(base.metadata.get("general.architecture"));
  if (baseArch === undefined) problems.push("the base model has no string general.architecture");
  const architecture = requireString("general.architecture", baseArch);
  const alphaValue = lora.metadata.get("adapter.lora.alpha");
  let alpha: number | null = null;
  if (alphaValue !== undefined) {
    if (alphaValue.type !== "float32" || typeof alphaValue.value !== "number") {
      problems.push(`metadata 'adapter.lora.alpha' must be float32, found ${alphaValue.type} (llama.cpp would abort)`);
    } else if (!Number.isFinite(alphaValue.value)) {
      problems.push(`metadata 'adapter.lora.alpha' is ${alphaValue.value}`);
    } else {
      alpha = alphaValue.value;
    }
  }
  const invocation = lora.metadata.get("adapter.alora.invocation_tokens");
  if (invocation !== undefined && (invocation.type !== "array" || invocation.itemType !== "uint32")) {
    problems.push("metadata 'adapter.alora.invocation_tokens' must be an array of uint32");
  }
  return { alpha, architecture };
}

function checkPair(
  name: string,
  a: GgufTensorInfo,
  b: GgufTensorInfo,
  base: GgufTensorInfo | undefined,
  problems: string[],
): number | null {
  if (!base) {
    problems.push(`'${name}' does not exist in the base model`);
    return null;
  }
  for (const t of [a, b]) {
    if (t.shape.length !== 2) problems.push(`'${t.name}' must be 2-D, has shape [${t.shape}]`);
    if (!ALLOWED_TYPES.has(t.type)) problems.push(`'${t.name}' has type ${t.type}; use F32 or F16`);
  }
  if (base.shape.length !== 2 || a.shape.length !== 2 || b.shape.length !== 2) return null;
  const [a0, a1] = a.shape as [number, number];
  const [b0, b1] = b.shape as [number, number];
  const [w0, w1] = base.shape as [number, number];
  if (name.endsWith("token_embd.weight")) {
    // llama.cpp swaps A and B for the embedding (get_rows on A): a [r, n_vocab], b [r, n_embd].
    if (w0 !== b1 || w1 !== a1) problems.push(`'${name}': lora_a [${a.shape}] / lora_b [${b.shape}] do not fit base [${base.shape}]`);
    if (a0 !== b0) problems.push(`'${name}': ranks differ (lora_a ne[0] = ${a0}, lora_b ne[0] = ${b0})`);
  } else {
    if (w0 !== a0 || w1 !== b1) problems.push(`'${name}': lora_a [${a.shape}] / lora_b [${b.shape}] do not fit base [${base.shape}]`);
    if (a1 !== b0) problems.push(`'${name}': ranks differ (lora_a ne[1] = ${a1}, lora_b ne[0] = ${b0})`);
  }
  if (b0 < 1) problems.push(`'${name}': rank 0`);
  return b0;
}

/** Validates a parsed GGUF LoRA header against a base header; throws GGUF_LORA_INVALID listing every problem. */
export function validateGgufLoraHeader(lora: GgufFile, base: GgufFile, source = "GGUF LoRA"): GgufLoraSummary {
  const problems: string[] = [];
  const { alpha, architecture } = checkMetadata(lora, base, problems);
  const pairs = new Map<string, { a?: GgufTensorInfo; b?: GgufTensorInfo }>();
  for (const t of lora.tensors) {
    const match = /^(.+)\.lora_([ab])$/.exec(t.name);
    if (!match) {
      // llama.cpp skips *_norm.weight and fails (without aborting) on anything else; reject both early.
      problems.push(`unexpected tensor '${t.name}' (expected <base tensor>.lora_a / .lora_b)`);
      continue;
    }
    const pair = pairs.get(match[1]!) ?? {};
    pair[match[2] as "a" | "b"] = t;
    pairs.set(match[1]!, pair);
  }
  if (pairs.size === 0) problems.push("no LoRA tensor pairs");
  const baseTensors = new Map(base.tensors.map((t) => [t.name, t]));
  const ranks = new Map<string, number>();
  for (const [name, { a, b }] of pairs) {
    if (!a || !b) {
      problems.push(`'${name}' has ${a ? "lora_a" : "lora_b"} but no ${a ? "lora_b" : "lora_a"}`);
      continue;
    }
    const rank = checkPair(name, a, b, baseTensors.get(name), problems);
    if (rank !== null) ranks.set(name, rank);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 20).join("; ");
    const more = problems.length > 20 ? ` (and ${problems.length - 20} more)` : "";
    throw new LoraError("GGUF_LORA_INVALID", `${source}: ${shown}${more}`);
  }
  return { alpha, architecture, ranks };
}

/** Re-reads a GGUF LoRA file's header and validates it against the base model's header. */
export async function validateGgufLora(path: string, baseHeader: GgufFile): Promise<GgufLoraSummary> {
  return validateGgufLoraHeader(await readGgufFile(path), baseHeader, path);
}
