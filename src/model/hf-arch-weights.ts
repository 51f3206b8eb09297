import { isGemma, type ArchShape } from "./arch-config.js";
import { SeededRandom } from "./seeded-random.js";

/**
 * The tensors of a HF causal LM of each supported family, by HF name and PyTorch shape, and random weights for
 * them. Names follow the HF modelling code (Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM,
 * Gemma3ForCausalLM, Phi3ForCausalLM; LlamaForCausalLM is hf-llama-weights.ts).
 */

export type HfArchTensorKind = "embedding" | "linear" | "norm" | "bias";

export interface HfArchTensorSpec {
  readonly name: string;
  /** PyTorch shape: [out, in] for linear layers, [n] for norms and biases. */
  readonly dims: readonly [number] | readonly [number, number];
  readonly kind: HfArchTensorKind;
}

export function qDim(shape: ArchShape): number {
  return shape.nHead * shape.headDim;
}

export function kvDim(shape: ArchShape): number {
  return shape.nHeadKv * shape.headDim;
}

/** Every tensor of the model in a fixed order. */
export function hfArchTensorSpecs(shape: ArchShape): HfArchTensorSpec[] {
  const { architecture: arch, nEmbd: d, nFf: ff, headDim } = shape;
  const q = qDim(shape);
  const kv = kvDim(shape);
  const specs: HfArchTensorSpec[] = [{ name: "model.embed_tokens.weight", dims: [shape.vocabSize, d], kind: "embedding" }];
  const linear = (name: string, out: number, inDim: number) => specs.push({ name, dims: [out, inDim], kind: "linear" });
  const norm = (name: string, n: number) => specs.push({ name, dims: [n], kind: "norm" });
  for (let i = 0; i < shape.nLayer; i++) {
    const p = `model.layers.${i}`;
    norm(`${p}.input_layernorm.weight`, d);
    if (arch === "phi3") {
      linear(`${p}.self_attn.qkv_proj.weight`, q + 2 * kv, d);
    } else {
      linear(`${p}.self_attn.q_proj.weight`, q, d);
      linear(`${p}.self_attn.k_proj.weight`, kv, d);
      linear(`${p}.self_attn.v_proj.weight`, kv, d);
    }
    if (arch === "qwen2") {
      specs.push(
        { name: `${p}.self_attn.q_proj.bias`, dims: [q], kind: "bias" },
        { name: `${p}.self_attn.k_proj.bias`, dims: [kv], kind: "bias" },
        { name: `${p}.self_attn.v_proj.bias`, dims: [kv], kind: "bias" },
      );
    }
    if (arch === "qwen3" || arch === "gemma3") {
      norm(`${p}.self_attn.q_norm.weight`, headDim);
      norm(`${p}.self_attn.k_norm.weight`, headDim);
    }
    linear(`${p}.self_attn.o_proj.weight`, d, q);
    norm(`${p}.post_attention_layernorm.weight`, d);
    if (isGemma(arch)) norm(`${p}.pre_feedforward_layernorm.weight`, d);
    if (arch === "phi3") {
      linear(`${p}.mlp.gate_up_proj.weight`, 2 * ff, d);
    } else {
      linear(`${p}.mlp.gate_proj.weight`, ff, d);
      linear(`${p}.mlp.up_proj.weight`, ff, d);
    }
    linear(`${p}.mlp.down_proj.weight`, d, ff);
    if (isGemma(arch)) norm(`${p}.post_feedforward_layernorm.weight`, d);
  }
  norm("model.norm.weight", d);
  if (!shape.tiedEmbeddings) linear("lm_head.weight", shape.vocabSize, d);
  return specs;
}

/**
 * Random HF-layout weights, deterministic in `seed` (uint32), each tensor from its own stream seeded by
 * (seed, name). Linear weights U with std 1/sqrt(fan_in); embeddings std 1, or 1/sqrt(d) for Gemma, whose
 * graph multiplies them by sqrt(d); biases std 0.5 (big enough that a dropped bias shows); norm weights
 * 1 +- 0.2, except Gemma's, which HF stores as w in (1 + w) and so are 0 +- 0.2.
 */
export function createRandomHfArchWeights(shape: ArchShape, seed: number): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  const gemma = isGemma(shape.architecture);
  for (const spec of hfArchTensorSpecs(shape)) {
    const size = spec.dims.reduce((product, dim) => product * dim, 1);
    const values = new Float32Array(size);
    const random = new SeededRandom(seed, tensorStreamId(spec.name));
    if (spec.kind === "norm") {
      random.fillUniform(values, 0.2);
      if (!gemma) for (let i = 0; i < size; i++) values[i] = 1 + values[i]!;
    } else {
      const std =
        spec.kind === "bias" ? 0.5 : spec.kind === "embedding" ? (gemma ? 1 / Math.sqrt(shape.nEmbd) : 1) : 1 / Math.sqrt(spec.dims[1]!);
      random.fillUniform(values, std * Math.sqrt(3)); // U(-a, a) has std a / sqrt(3)
    }
    weights.set(spec.name, values);
  }
  return weights;
}

/** FNV-1a of the tensor name: a stable per-tensor stream id. */
export function tensorStreamId(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}
