// An independent float64 forward pass of the HF causal LMs `model create --arch` writes, written from the
// equations of the HF modelling code (modeling_qwen2.py, modeling_qwen3.py, modeling_gemma2.py,
// modeling_gemma3.py, modeling_phi3.py), not from llama.cpp, on HF-layout weights (HF names, q/k rows in HF
// order, Gemma norms as the w of (1 + w)):
//   qwen2   llama + biases on q/k/v
//   qwen3   llama + RMSNorm of each q/k head (before rope), head size independent of n_embd
//   gemma2  embeddings * sqrt(d); (1 + w) RMSNorm; norms before and after attention and MLP; GELU-tanh
//           gated MLP; scores scaled by query_pre_attn_scalar^-1/2 (= head size here) and soft-capped
//           tanh(s / c) * c; every other layer (even ones) sees only the last `sliding_window` tokens;
//           tied lm_head; final logits soft-capped
//   gemma3  gemma2 without attention soft-capping, plus (1 + w) q/k norms, a separate rope base for the
//           sliding layers, sliding pattern N (every N-th layer global), final soft cap optional
//   phi3    llama with fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows, gate first)
// All use rotate_half rope on HF-ordered q/k. It favours obviousness over speed.

import { float16BitsToFloat32, float32ToFloat16Bits } from "../../src/gguf/float16.js";
import { type ArchModelConfig, isGemma, isSlidingLayer } from "../../src/model/arch-config.js";
import type { ReferenceLoraAdapter } from "./reference-llama.js";

export type { ReferenceLoraAdapter } from "./reference-llama.js";

type Vector = Float64Array;

export interface ArchReferenceOptions {
  /** Applied together: y = W x (+ b) + sum over adapters of scale * (alpha / r) * B (A x); r = rows of A. */
  adapters?: ReferenceLoraAdapter[];
  /**
   * Off by default (the HF equations). On: GELU as ggml's CPU backend computes it (GGML_GELU_FP16), a lookup
   * table indexed by the input rounded to float16 and holding float16 results. Used only to show that this
   * one documented approximation is all that separates llama.cpp's Gemma from the exact equations.
   */
  ggmlFp16Gelu?: boolean;
  /**
   * Off by default. For quantized bases: the type ggml converts a matmul's input vector to for the weight of
   * this HF name (its vec_dot_type: Q8_0 for Q8_0 weights, F16 for F16 weights), which rounds the activations
   * before the dot products. LoRA matmuls (F32 tensors) see the unrounded input, as in llama.cpp.
   */
  ggmlActivationType?: (hfWeightName: string) => "Q8_0" | "F16" | undefined;
}

/** Logits (float64, vocabSize each) for every position of `tokens`, positions starting at 0. */
export function referenceArchLogits(
  config: ArchModelConfig,
  weights: ReadonlyMap<string, Float32Array>,
  tokens: readonly number[],
  options: ArchReferenceOptions = {},
): Float64Array[] {
  const arch = config.architecture;
  const gemma = isGemma(arch);
  const d = config.nEmbd;
  const weight = (name: string): Float32Array => {
    const value = weights.get(name);
    if (!value) throw new Error(`reference model: missing weight ${name}`);
    return value;
  };
  // Gemma's RMSNorm multiplies by (1 + w); the others by w.
  const norm = (x: Vector, name: string) => rmsNorm(x, weight(name), config.rmsEps, gemma ? 1 : 0);
  const embed = weight("model.embed_tokens.weight");
  const roundActivations = (name: string, x: Vector): Vector => {
    const type = options.ggmlActivationType?.(name);
    return type === "Q8_0" ? q8_0Activations(x) : type === "F16" ? x.map(toHalf) : x;
  };
  const lmHead = config.tiedEmbeddings ? embed : weight("lm_head.weight");

  let hidden: Vector[] = tokens.map((token) => {
    if (!Number.isInteger(token) || token < 0 || token >= config.vocabSize) throw new Error(`bad token ${token}`);
    const row = Float64Array.from(embed.subarray(token * d, (token + 1) * d));
    // HF Gemma: hidden_states * normalizer, normalizer = hidden_size ** 0.5.
    return gemma ? row.map((v) => v * Math.sqrt(d)) : row;
  });

  for (let layer = 0; layer < config.nLayer; layer++) {
    const prefix = `model.layers.${layer}`;
    const project = (module: string, x: Vector, outDim: number): Vector => {
      const name = `${prefix}.${module}.weight`;
      const y = linearWithLora(weight(name), x, outDim, `${prefix}.${module}`, options.adapters, roundActivations(name, x));
      const bias = weights.get(`${prefix}.${module}.bias`);
      if (bias) for (let i = 0; i < outDim; i++) y[i]! += bias[i]!;
      return y;
    };

    const normed = hidden.map((h) => norm(h, `${prefix}.input_layernorm.weight`));
    let attention = attend(config, layer, normed, project, (x, which) => norm(x, `${prefix}.self_attn.${which}_norm.weight`));
    if (gemma) attention = attention.map((a) => norm(a, `${prefix}.post_attention_layernorm.weight`));
    hidden = hidden.map((h, t) => add(h, attention[t]!));

    const ffnNorm = gemma ? `${prefix}.pre_feedforward_layernorm.weight` : `${prefix}.post_attention_layernorm.weight`;
    hidden = hidden.map((h) => {
      let out = mlp(config, norm(h, ffnNorm), project, options.ggmlFp16Gelu ? ggmlFp16Gelu : geluTanh);
      if (gemma) out = norm(out, `${prefix}.post_feedforward_layernorm.weight`);
      return add(h, out);
    });
  }

  return hidden.map((h) => {
    const headName = config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    const normed = norm(h, "model.norm.weight");
    const logits = matVec(lmHead, roundActivations(headName, normed), config.vocabSize);
    const cap = config.finalSoftcap;
    return cap === null ? logits : logits.map((l) => Math.tanh(l / cap) * cap);
  });
}

type Project = (module: string, x: Vector, outDim: number) => Vector;

function attend(
  config: ArchModelConfig,
  layer: number,
  normed: Vector[],
  project: Project,
  qkNorm: (x: Vector, which: "q" | "k") => Vector,
): Vector[] {
  const { headDim, nHead, nHeadKv, architecture: arch } = config;
  const qDim = nHead * headDim;
  const kvDim = nHeadKv * headDim;
  const groupSize = nHead / nHeadKv;
  const sliding = isSlidingLayer(config, layer);
  const theta = sliding && config.ropeThetaSwa !== null ? config.ropeThetaSwa : config.ropeTheta;
  const perHeadNorm = arch === "qwen3" || arch === "gemma3";

  const qkv = normed.map((x): [Vector, Vector, Vector] => {
    if (arch === "phi3") {
      const fused = project("self_attn.qkv_proj", x, qDim + 2 * kvDim);
      return [fused.slice(0, qDim), fused.slice(qDim, qDim + kvDim), fused.slice(qDim + kvDim)];
    }
    return [project("self_attn.q_proj", x, qDim), project("self_attn.k_proj", x, kvDim), project("self_attn.v_proj", x, kvDim)];
  });
  const prepare = (x: Vector, pos: number, which: "q" | "k"): Vector => {
    const normedHeads = perHeadNorm ? mapHeads(x, headDim, (head) => qkNorm(head, which)) : x;
    return rotateHalf(normedHeads, pos, headDim, theta);
  };
  const queries = qkv.map(([q], pos) => prepare(q, pos, "q"));
  const keys = qkv.map(([, k], pos) => prepare(k, pos, "k"));
  const values = qkv.map(([, , v]) => v);
  // Gemma: query_pre_attn_scalar ** -0.5 with query_pre_attn_scalar = head size (the non-27B configs).
  const scale = 1 / Math.sqrt(headDim);
  const cap = config.attnSoftcap;

  return queries.map((query, t) => {
    const mixed = new Float64Array(qDim);
    const first = sliding ? Math.max(0, t - config.slidingWindow! + 1) : 0;
    for (let head = 0; head < nHead; head++) {
      const kvHead = Math.floor(head / groupSize);
      const q = query.subarray(head * headDim, (head + 1) * headDim);
      const scores: number[] = [];
      for (let s = first; s <= t; s++) {
        const raw = dot(q, keys[s]!.subarray(kvHead * headDim, (kvHead + 1) * headDim)) * scale;
        scores.push(cap === null ? raw : Math.tanh(raw / cap) * cap);
      }
      const probabilities = softmax(scores);
      for (let s = first; s <= t; s++) {
        const v = values[s]!.subarray(kvHead * headDim, (kvHead + 1) * headDim);
        for (let i = 0; i < headDim; i++) mixed[head * headDim + i]! += probabilities[s - first]! * v[i]!;
      }
    }
    return project("self_attn.o_proj", mixed, config.nEmbd);
  });
}

function mlp(config: ArchModelConfig, x: Vector, project: Project, gelu: (x: number) => number): Vector {
  const ff = config.nFf;
  let gate: Vector;
  let up: Vector;
  if (config.architecture === "phi3") {
    // Phi3MLP: gate, up_states = gate_up_proj(x).chunk(2, dim=-1)
    const fused = project("mlp.gate_up_proj", x, 2 * ff);
    gate = fused.slice(0, ff);
    up = fused.slice(ff);
  } else {
    gate = project("mlp.gate_proj", x, ff);
    up = project("mlp.up_proj", x, ff);
  }
  const act = isGemma(config.architecture) ? gelu : silu;
  return project(
    "mlp.down_proj",
    gate.map((g, i) => act(g) * up[i]!),
    config.nEmbd,
  );
}

const silu = (x: number) => x / (1 + Math.exp(-x));

/** PyTorch's gelu(approximate="tanh") (HF "gelu_pytorch_tanh"). */
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

const toHalf = (v: number) => float16BitsToFloat32(float32ToFloat16Bits(v));

/** ggml_vec_gelu_f32 with GGML_GELU_FP16: 0 below -10, identity above 10, else fp16(gelu(fp16(x))). */
function ggmlFp16Gelu(x: number): number {
  if (x <= -10) return 0;
  if (x >= 10) return x;
  return toHalf(geluTanh(toHalf(x)));
}

/**
 * A vector as ggml's quantize_row_q8_0 leaves it: per block of 32 (float32 arithmetic), d = max|x| / 127,
 * q = round(x / d) half away from zero, stored d rounded to float16; value = fp16(d) * q.
 */
function q8_0Activations(x: Vector): Vector {
  const out = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += 32) {
    let amax = 0;
    for (let i = start; i < start + 32; i++) amax = Math.max(amax, Math.abs(Math.fround(x[i]!)));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    for (let i = start; i < start + 32; i++) {
      const v = Math.fround(Math.fround(x[i]!) * id);
      out[i] = toHalf(d) * Math.sign(v) * Math.round(Math.abs(v));
    }
  }
  return out;
}

function mapHeads(x: Vector, headDim: number, fn: (head: Vector) => Vector): Vector {
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += headDim) out.set(fn(x.subarray(base, base + headDim)), base);
  return out;
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

function linearWithLora(
  w: Float32Array,
  x: Vector,
  outDim: number,
  module: string,
  adapters: ReferenceLoraAdapter[] | undefined,
  xForBase: Vector = x,
): Vector {
  const y = matVec(w, xForBase, outDim);
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

/** x / rms(x) * (offset + w): offset 1 is Gemma's (1 + w) RMSNorm. */
function rmsNorm(x: Vector, gain: Float32Array, eps: number, offset: 0 | 1): Vector {
  if (gain.length !== x.length) throw new Error(`reference: norm of ${gain.length} for a vector of ${x.length}`);
  const meanSquare = x.reduce((sum, v) => sum + v * v, 0) / x.length;
  const inverse = 1 / Math.sqrt(meanSquare + eps);
  return x.map((v, i) => v * inverse * (offset + gain[i]!));
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
