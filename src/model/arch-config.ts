import type { LlamaConfig } from "./llama-config.js";

/**
 * Hyper-parameters of the architectures `model create --arch` writes, named after llama.cpp's GGUF keys. One
 * shape (LlamaConfig) plus what each family adds: an explicit head size (Qwen3 and Gemma decouple it from
 * n_embd / n_head), tied embeddings, Gemma's soft-capping and sliding window.
 */

export const MODEL_ARCHITECTURES = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"] as const;
export type ModelArchitecture = (typeof MODEL_ARCHITECTURES)[number];

export function isModelArchitecture(value: string): value is ModelArchitecture {
  return (MODEL_ARCHITECTURES as readonly string[]).includes(value);
}

export interface ArchModelConfig extends LlamaConfig {
  readonly architecture: ModelArchitecture;
  /** Size of one attention head (q/k/v); n_embd / n_head unless the family sets it. */
  readonly headDim: number;
  /** lm_head shares token_embd (Gemma always; llama.cpp's gemma2 graph has no output tensor). */
  readonly tiedEmbeddings: boolean;
  /** Gemma 2: tanh soft cap on attention scores (HF attn_logit_softcapping). */
  readonly attnSoftcap: number | null;
  /** Gemma 2 (Gemma 3 optionally): tanh soft cap on the final logits (HF final_logit_softcapping). */
  readonly finalSoftcap: number | null;
  /** Gemma: sliding-window size of the local-attention layers (a token sees the last `slidingWindow`). */
  readonly slidingWindow: number | null;
  /** Gemma: every `slidingWindowPattern`-th layer is global, the others slide (Gemma 2: 2, Gemma 3: 6). */
  readonly slidingWindowPattern: number | null;
  /** Gemma 3: rope base of the sliding layers (HF rope_local_base_freq); ropeTheta is the global layers'. */
  readonly ropeThetaSwa: number | null;
}

/** The shape part the tensors depend on. */
export type ArchShape = Pick<
  ArchModelConfig,
  "architecture" | "nLayer" | "nEmbd" | "nHead" | "nHeadKv" | "nFf" | "vocabSize" | "headDim" | "tiedEmbeddings"
>;

export const isGemma = (architecture: ModelArchitecture): boolean => architecture === "gemma2" || architecture === "gemma3";

/** Whether layer `layer` uses sliding-window attention (HF Gemma2/3: every pattern-th layer, 1-based, is global). */
export function isSlidingLayer(config: Pick<ArchModelConfig, "slidingWindow" | "slidingWindowPattern">, layer: number): boolean {
  if (config.slidingWindow === null || config.slidingWindowPattern === null) return false;
  return (layer + 1) % config.slidingWindowPattern !== 0;
}

/** Throws a one-line Error naming the first inconsistent field; returns the config. */
export function validateArchConfig<T extends ArchModelConfig>(config: T): T {
  for (const field of ["nLayer", "nEmbd", "nHead", "nHeadKv", "nFf", "vocabSize", "headDim", "contextLength"] as const) {
    const value = config[field];
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${field} must be a positive integer, got ${value}`);
  }
  // Qwen3 and Gemma store the head size (attention.key_length); the others derive it as n_embd / n_head.
  const freeHeadSize = config.architecture === "qwen3" || isGemma(config.architecture);
  if (!freeHeadSize && config.headDim !== config.nEmbd / config.nHead) {
    throw new Error(`embedding size ${config.nEmbd} must be divisible by the head count ${config.nHead}`);
  }
  if (config.nHead % config.nHeadKv !== 0) {
    throw new Error(`head count ${config.nHead} must be divisible by the kv head count ${config.nHeadKv}`);
  }
  if (config.headDim % 2 !== 0) throw new Error(`head size ${config.headDim} must be even for rotary embeddings`);
  if (!(config.ropeTheta > 0)) throw new Error(`ropeTheta must be positive, got ${config.ropeTheta}`);
  if (!(config.rmsEps > 0)) throw new Error(`rmsEps must be positive, got ${config.rmsEps}`);
  for (const field of ["attnSoftcap", "finalSoftcap", "ropeThetaSwa"] as const) {
    const value = config[field];
    if (value !== null && !(value > 0)) throw new Error(`${field} must be positive, got ${value}`);
  }
  for (const field of ["slidingWindow", "slidingWindowPattern"] as const) {
    const value = config[field];
    if (value !== null && (!Number.isSafeInteger(value) || value < 1)) throw new Error(`${field} must be a positive integer, got ${value}`);
  }
  if (config.architecture === "gemma2" && config.slidingWindowPattern !== 2) {
    throw new Error("gemma2 alternates sliding and global layers: slidingWindowPattern must be 2");
  }
  return config;
}

export interface ArchShapeOptions {
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly nFf: number;
  readonly vocabSize: number;
  readonly contextLength?: number;
  /** Default n_embd / n_head. */
  readonly headDim?: number;
}

/**
 * A config for `architecture` with the family's defaults at tiny scale: Qwen's rope base 1e6, Gemma's tied
 * embeddings and soft caps (HF's 50 / 30), a sliding window of 8 so that tests at a few dozen tokens exercise
 * it, and Gemma 3's sliding pattern 2 instead of HF's 6, so that a 2-layer model has a local and a global layer.
 */
export function defaultArchConfig(architecture: ModelArchitecture, shape: ArchShapeOptions): ArchModelConfig {
  const gemma = isGemma(architecture);
  return validateArchConfig({
    architecture,
    nLayer: shape.nLayer,
    nEmbd: shape.nEmbd,
    nHead: shape.nHead,
    nHeadKv: shape.nHeadKv,
    nFf: shape.nFf,
    vocabSize: shape.vocabSize,
    contextLength: shape.contextLength ?? 4096,
    headDim: shape.headDim ?? shape.nEmbd / shape.nHead,
    ropeTheta: architecture === "qwen2" || architecture === "qwen3" || architecture === "gemma3" ? 1_000_000 : 10_000,
    rmsEps: gemma ? 1e-6 : architecture === "llama" ? 1e-5 : 1e-6,
    tiedEmbeddings: gemma,
    attnSoftcap: architecture === "gemma2" ? 50 : null,
    finalSoftcap: architecture === "gemma2" ? 30 : null,
    slidingWindow: gemma ? 8 : null,
    slidingWindowPattern: architecture === "gemma2" ? 2 : architecture === "gemma3" ? 2 : null,
    ropeThetaSwa: architecture === "gemma3" ? 10_000 : null,
  });
}
