import { headDim, validateLlamaShape, type LlamaShape } from "./llama-config.js";
import { SeededRandom } from "./seeded-random.js";

/** One HF tensor: its name and PyTorch shape ([out, in] for linear layers, [n] for norms). */
export interface HfTensorSpec {
  name: string;
  dims: [number] | [number, number];
  kind: "embedding" | "linear" | "norm";
}

/** Every tensor of a HF `LlamaForCausalLM` (untied lm_head), in a fixed order. */
export function hfLlamaTensorSpecs(shape: LlamaShape): HfTensorSpec[] {
  validateLlamaShape(shape);
  const d = shape.nEmbd;
  const kvDim = headDim(shape) * shape.nHeadKv;
  const specs: HfTensorSpec[] = [{ name: "model.embed_tokens.weight", dims: [shape.vocabSize, d], kind: "embedding" }];
  for (let i = 0; i < shape.nLayer; i++) {
    const layer = `model.layers.${i}`;
    specs.push(
      { name: `${layer}.input_layernorm.weight`, dims: [d], kind: "norm" },
      { name: `${layer}.self_attn.q_proj.weight`, dims: [d, d], kind: "linear" },
      { name: `${layer}.self_attn.k_proj.weight`, dims: [kvDim, d], kind: "linear" },
      { name: `${layer}.self_attn.v_proj.weight`, dims: [kvDim, d], kind: "linear" },
      { name: `${layer}.self_attn.o_proj.weight`, dims: [d, d], kind: "linear" },
      { name: `${layer}.post_attention_layernorm.weight`, dims: [d], kind: "norm" },
      { name: `${layer}.mlp.gate_proj.weight`, dims: [shape.nFf, d], kind: "linear" },
      { name: `${layer}.mlp.up_proj.weight`, dims: [shape.nFf, d], kind: "linear" },
      { name: `${layer}.mlp.down_proj.weight`, dims: [d, shape.nFf], kind: "linear" },
    );
  }
  specs.push(
    { name: "model.norm.weight", dims: [d], kind: "norm" },
    { name: "lm_head.weight", dims: [shape.vocabSize, d], kind: "linear" },
  );
  return specs;
}

/**
 * Random HF-layout llama weights, deterministic in `seed`. Scales keep activations near unit size so
 * logits are neither flat nor saturated: linear weights U with std 1/sqrt(fan_in), embeddings std 1,
 * norm weights 1 +- 0.2 (not exactly 1, so a forgotten norm weight shows up in parity tests).
 * Each tensor draws from its own stream seeded by (seed, name), so one tensor never shifts another.
 * `seed` is a uint32.
 */
export function createRandomHfLlamaWeights(shape: LlamaShape, seed: number): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  for (const spec of hfLlamaTensorSpecs(shape)) {
    const size = spec.dims.reduce((product, dim) => product * dim, 1);
    const values = new Float32Array(size);
    const random = new SeededRandom(seed, nameHash(spec.name));
    if (spec.kind === "norm") {
      random.fillUniform(values, 0.2);
      for (let i = 0; i < size; i++) values[i] = 1 + values[i]!;
    } else {
      const std = spec.kind === "embedding" ? 1 : 1 / Math.sqrt(spec.dims[1]!);
      random.fillUniform(values, std * Math.sqrt(3)); // U(-a, a) has std a / sqrt(3)
    }
    weights.set(spec.name, values);
  }
  return weights;
}

/** FNV-1a of the tensor name: a stable per-tensor stream id. */
function nameHash(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}
