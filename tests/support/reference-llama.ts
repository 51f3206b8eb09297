// An independent float64 forward pass of a HF-layout llama model, written from the HF modeling code's
// semantics (not from llama.cpp): RMSNorm, rotate_half RoPE on un-permuted q/k, grouped-query attention,
// SwiGLU MLP, untied lm_head. It is the oracle that llama.cpp's output (and our GGUF writing, LoRA
// import, merging and training) is checked against, so it favours obviousness over speed.

import type { LlamaConfig } from "../../src/model/llama-config.js";

/** PEFT LoRA tensors (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, ...). */
export interface ReferenceLoraAdapter {
  tensors: Map<string, Float32Array>;
  alpha: number;
  /** User scale on top of alpha / r (llama.cpp's adapter scale). Default 1. */
  scale?: number;
}

export interface ReferenceOptions {
  /** Applied together: y = W x + sum over adapters of scale * (alpha / r) * B (A x); r = rows of A. */
  adapters?: ReferenceLoraAdapter[];
}

type Vector = Float64Array;

/** Logits (float64, vocabSize each) for every position of `tokens`, positions starting at 0. */
export function referenceLlamaLogits(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  tokens: readonly number[],
  options: ReferenceOptions = {},
): Float64Array[] {
  const d = config.nEmbd;
  const weight = (name: string): Float32Array => {
    const value = weights.get(name);
    if (!value) throw new Error(`reference model: missing weight ${name}`);
    return value;
  };
  const embed = weight("model.embed_tokens.weight");
  const lmHead = weights.get("lm_head.weight") ?? embed;

  let hidden: Vector[] = tokens.map((token) => {
    if (!Number.isInteger(token) || token < 0 || token >= config.vocabSize) throw new Error(`bad token ${token}`);
    return Float64Array.from(embed.subarray(token * d, (token + 1) * d));
  });

  for (let layer = 0; layer < config.nLayer; layer++) {
    const prefix = `model.layers.${layer}`;
    const project = (module: string, x: Vector, outDim: number) =>
      linearWithLora(weight(`${prefix}.${module}.weight`), x, outDim, `${prefix}.${module}`, options.adapters);

    const normed = hidden.map((h) => rmsNorm(h, weight(`${prefix}.input_layernorm.weight`), config.rmsEps));
    const attention = attend(config, normed, project);
    hidden = hidden.map((h, t) => add(h, attention[t]!));

    const normed2 = hidden.map((h) => rmsNorm(h, weight(`${prefix}.post_attention_layernorm.weight`), config.rmsEps));
    hidden = hidden.map((h, t) => {
      const x = normed2[t]!;
      const gate = project("mlp.gate_proj", x, config.nFf);
      const up = project("mlp.up_proj", x, config.nFf);
      const activated = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      return add(h, project("mlp.down_proj", activated, d));
    });
  }

  return hidden.map((h) => matVec(lmHead, rmsNorm(h, weight("model.norm.weight"), config.rmsEps), config.vocabSize));
}

function attend(config: LlamaConfig, normed: Vector[], project: (module: string, x: Vector, outDim: number) => Vector): Vector[] {
  const headSize = config.nEmbd / config.nHead;
  const kvDim = headSize * config.nHeadKv;
  const groupSize = config.nHead / config.nHeadKv;
  const queries = normed.map((x, pos) => rotateHalf(project("self_attn.q_proj", x, config.nEmbd), pos, headSize, config.ropeTheta));
  const keys = normed.map((x, pos) => rotateHalf(project("self_attn.k_proj", x, kvDim), pos, headSize, config.ropeTheta));
  const values = normed.map((x) => project("self_attn.v_proj", x, kvDim));

  return queries.map((query, t) => {
    const mixed = new Float64Array(config.nEmbd);
    for (let head = 0; head < config.nHead; head++) {
      const kvHead = Math.floor(head / groupSize);
      const q = query.subarray(head * headSize, (head + 1) * headSize);
      const scores = keys
        .slice(0, t + 1)
        .map((key) => dot(q, key.subarray(kvHead * headSize, (kvHead + 1) * headSize)) / Math.sqrt(headSize));
      const probabilities = softmax(scores);
      for (let s = 0; s <= t; s++) {
        const v = values[s]!.subarray(kvHead * headSize, (kvHead + 1) * headSize);
        for (let i = 0; i < headSize; i++) mixed[head * headSize + i]! += probabilities[s]! * v[i]!;
      }
    }
    return project("self_attn.o_proj", mixed, config.nEmbd);
  });
}

/** HF apply_rotary_pos_emb: pairs (x[j], x[j + d/2]) rotated by pos * theta^(-2j/d), per head. */
function rotateHalf(x: Vector, pos: number, headSize: number, theta: number): Vector {
  const out = new Float64Array(x.length);
  const half = headSize / 2;
  for (let base = 0; base < x.length; base += headSize) {
    for (let j = 0; j < half; j++) {
      const angle = pos * theta ** ((-2 * j) / headSize);
      const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
      const [a, b] = [x[base + j]!, x[base + j + half]!];
      out[base + j] = a * cos - b * sin;
      out[base + j + half] = b * cos + a * sin;
    }
  }
  return out;
}

function linearWithLora(w: Float32Array, x: Vector, outDim: number, module: string, adapters: ReferenceLoraAdapter[] | undefined): Vector {
  const y = matVec(w, x, outDim);
  for (const adapter of adapters ?? []) {
    const a = adapter.tensors.get(`base_model.model.${module}.lora_A.weight`);
    const b = adapter.tensors.get(`base_model.model.${module}.lora_B.weight`);
    if (!a && !b) continue;
    if (!a || !b) throw new Error(`reference LoRA: ${module} has only one of lora_A / lora_B`);
    const rank = a.length / x.length;
    if (!Number.isInteger(rank) || b.length !== outDim * rank) throw new Error(`reference LoRA: bad shapes for ${module}`);
    const factor = (adapter.scale ?? 1) * (adapter.alpha / rank);
    const delta = matVec(b, matVec(a, x, rank), outDim);
    for (let i = 0; i < outDim; i++) y[i]! += factor * delta[i]!;
  }
  return y;
}

/** Row-major [rows, x.length] matrix times x. */
function matVec(matrix: Float32Array, x: Vector, rows: number): Vector {
  const cols = x.length;
  if (matrix.length !== rows * cols) throw new Error(`reference: matrix of ${matrix.length} is not ${rows}x${cols}`);
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += matrix[r * cols + c]! * x[c]!;
    out[r] = sum;
  }
  return out;
}

function rmsNorm(x: Vector, gain: Float32Array, eps: number): Vector {
  const meanSquare = x.reduce((sum, v) => sum + v * v, 0) / x.length;
  const inverse = 1 / Math.sqrt(meanSquare + eps);
  return x.map((v, i) => v * inverse * gain[i]!);
}

function softmax(scores: number[]): number[] {
  const max = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - max));
  const total = exps.reduce((sum, e) => sum + e, 0);
  return exps.map((e) => e / total);
}

function dot(a: Vector, b: Vector): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]! * b[i]!;
  return sum;
}

function add(a: Vector, b: Vector): Vector {
  return a.map((v, i) => v + b[i]!);
}

/** log-softmax in float64: logits made comparable with llama.cpp's, which we only see as probabilities. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i]! - max);
  const logTotal = max + Math.log(total);
  return Float64Array.from(logits, (v) => v - logTotal);
}
