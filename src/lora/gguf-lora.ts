import { writeGgufFile } from "../gguf/gguf-writer.js";
import type { GgufFile, GgufMetadataValue, GgufTensorInput, GgufWriteInput } from "../gguf/gguf-types.js";
import { permuteRowsForRope } from "../model/llama-permute.js";
import { materializeA, moduleScale, type Adapter, type LoraModule } from "./adapter.js";
import { architectureLayout, baseTensorName, ropePermutationHeads, type ArchitectureLayout } from "./architectures.js";
import { doraIsNotALoraError, isDoraAdapter } from "./dora.js";
import { LoraError } from "./errors.js";
import { validateGgufLora, type GgufLoraSummary } from "./gguf-lora-validate.js";

/**
 * Compiles an in-memory adapter into a GGUF LoRA that llama.cpp (node-llama-cpp) loads for a given base.
 *
 * Scaling. llama.cpp applies `user_scale * alpha / r` per tensor (r = lora_b ne[0]) when the file's single
 * float32 `adapter.lora.alpha` is non-zero, else `user_scale`. Our modules may each have their own rank, alpha
 * and rsLoRA scale, so we write a global alpha G (the adapter's most common alpha, as float32; 1 if that is 0)
 * and fold f = s_m * r_m / G into each B, where s_m is the module's PEFT scale. llama.cpp then computes
 * user_scale * (G / r_m) * f * B A = user_scale * s_m * B A exactly as PEFT would. For an ordinary adapter
 * (uniform alpha, no rsLoRA) f = 1 and B is written unchanged, byte-identical to convert_lora_to_gguf.py's.
 * We never write alpha = 0, so a missing or zero alpha in a file always means someone else wrote it.
 *
 * Layout. lora_a: ggml ne [in, r] (= PEFT A [r, in] row-major); lora_b: ne [r, out] (= PEFT B [out, r]).
 * Names and rope. Which base tensor a module adapts, and whether HF->GGUF conversion permuted its output rows
 * (llama: q_proj by n_head, k_proj by n_head_kv; the others: none), come from architectures.ts. B produces
 * those rows, so it gets the same permutation; A (input side) does not. Fused Phi-3 modules map 1:1.
 */

export interface CompileGgufLoraOptions {
  /** Tensor type of lora_a / lora_b. Default "F32". */
  readonly dtype?: "F32" | "F16";
  /**
   * Row order of q_proj / k_proj B in the adapter. "hf" (PEFT and this project's adapter format): permuted
   * where the architecture's conversion permuted the base (llama). "gguf": already in the base GGUF's order,
   * written as is. Default "hf".
   */
  readonly qkRowOrder?: "hf" | "gguf";
  /** `general.name` of the adapter file. */
  readonly name?: string;
}

function metadataString(header: GgufFile, key: string): string {
  const value = header.metadata.get(key);
  if (value?.type !== "string" || typeof value.value !== "string") {
    throw new LoraError("GGUF_LORA_INVALID", `the base model has no string metadata '${key}'`);
  }
  return value.value;
}

function globalAlpha(modules: readonly LoraModule[]): number {
  const counts = new Map<number, number>();
  for (const m of modules) counts.set(m.alpha, (counts.get(m.alpha) ?? 0) + 1);
  let best = modules[0]!.alpha;
  for (const [alpha, n] of counts) if (n > counts.get(best)!) best = alpha;
  const g = Math.fround(best);
  return Number.isFinite(g) && g !== 0 ? g : 1;
}

function loraB(m: LoraModule, factor: number, header: GgufFile, layout: ArchitectureLayout, qkRowOrder: "hf" | "gguf"): Float32Array {
  const b = factor === 1 ? m.b : Float32Array.from(m.b, (x) => x * factor);
  const heads = qkRowOrder === "hf" ? ropePermutationHeads(layout, header, m.layer, m.module) : null;
  return heads === null ? b : permuteRowsForRope(b, m.outFeatures, m.rank, heads);
}

/** The GGUF file contents (metadata + tensors) for `adapter` on `baseHeader`; nothing is written. */
export function planGgufLora(adapter: Adapter, baseHeader: GgufFile, options: CompileGgufLoraOptions = {}): GgufWriteInput {
  if (isDoraAdapter(adapter)) throw doraIsNotALoraError(options.name);
  const architecture = metadataString(baseHeader, "general.architecture");
  const layout = architectureLayout(architecture);
  const dtype = options.dtype ?? "F32";
  const baseTensors = new Map(baseHeader.tensors.map((t) => [t.name, t]));
  const alpha = globalAlpha(adapter.modules);
  const tensors: GgufTensorInput[] = [];
  for (const m of adapter.modules) {
    const name = baseTensorName(layout, m.layer, m.module);
    const base = baseTensors.get(name);
    if (!base) throw new LoraError("GGUF_LORA_INVALID", `${name} (layer ${m.layer} ${m.module}) does not exist in the base model`);
    if (base.shape.length !== 2 || base.shape[0] !== m.inFeatures || base.shape[1] !== m.outFeatures) {
      throw new LoraError(
        "GGUF_LORA_INVALID",
        `${name} is [${base.shape}] (ne) in the base, the adapter expects [${m.inFeatures},${m.outFeatures}]: wrong base model?`,
      );
    }
    const factor = (moduleScale(m, adapter.config.use_rslora) * m.rank) / alpha;
    tensors.push({ name: `${name}.lora_a`, type: dtype, shape: [m.inFeatures, m.rank], data: materializeA(m) });
    tensors.push({
      name: `${name}.lora_b`,
      type: dtype,
      shape: [m.rank, m.outFeatures],
      data: loraB(m, factor, baseHeader, layout, options.qkRowOrder ?? "hf"),
    });
  }
  const metadata: Array<[string, GgufMetadataValue]> = [
    ["general.type", { type: "string", value: "adapter" }],
    ["general.architecture", { type: "string", value: architecture }],
  ];
  if (options.name) metadata.push(["general.name", { type: "string", value: options.name }]);
  metadata.push(["adapter.type", { type: "string", value: "lora" }]);
  // float32 on purpose: llama.cpp reads it with an asserting getter, any other type aborts the process.
  metadata.push(["adapter.lora.alpha", { type: "float32", value: alpha }]);
  return { metadata, tensors };
}

/**
 * Writes the GGUF LoRA atomically, then re-reads and validates it against the base before anyone hands it to
 * llama.cpp. Returns the validated summary.
 */
export async function compileGgufLora(
  adapter: Adapter,
  baseHeader: GgufFile,
  outPath: string,
  options: CompileGgufLoraOptions = {},
): Promise<GgufLoraSummary> {
  await writeGgufFile(outPath, planGgufLora(adapter, baseHeader, options));
  return validateGgufLora(outPath, baseHeader);
}
