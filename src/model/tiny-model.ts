import { CHATML_TEMPLATE, BYTE_TOKENIZER_BASE_VOCAB, createByteTokenizer } from "./byte-tokenizer.js";
import { createRandomHfLlamaWeights } from "./hf-llama-weights.js";
import { validateLlamaConfig, type LlamaConfig } from "./llama-config.js";
import type { WeightDtype } from "./weight-dtype.js";
import { writeLlamaGguf } from "./write-llama-gguf.js";

export interface TinyModelOptions {
  /** Output .gguf path (written atomically). */
  out: string;
  /** Default 2. */
  layers?: number;
  /** Default 64. */
  embd?: number;
  /** Default 4. */
  heads?: number;
  /** Default 2. */
  kvHeads?: number;
  /** Default 128. */
  ff?: number;
  /** Total vocabulary size; default 260 (256 bytes + 4 specials), larger pads with reserved tokens. */
  vocab?: number;
  /** uint32; default 0. */
  seed?: number;
  /** Default "f32". */
  /** Weight type; norms stay F32. */
  dtype?: WeightDtype;
  /** Default 4096. */
  contextLength?: number;
  /** `general.name`; default "lori-tiny". */
  name?: string;
}

export type TinyModelShape = Required<Pick<TinyModelOptions, "layers" | "embd" | "heads" | "kvHeads" | "ff" | "dtype">>;

/** The "bench shape" of docs/background.md section 5 and docs/benchmarks.md: llama, F16, ~23.6M parameters. */
export const BENCH_SHAPE: TinyModelShape = { layers: 8, embd: 512, heads: 8, kvHeads: 4, ff: 1408, dtype: "f16" };

/** The model shipped on first start: small enough to generate and load in milliseconds. */
export const EMBEDDED_SHAPE: TinyModelShape = { layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, dtype: "f32" };

/** The LlamaConfig that createTinyModel uses for `options` (defaults applied, validated). */
export function tinyModelConfig(options: Omit<TinyModelOptions, "out">): LlamaConfig {
  return validateLlamaConfig({
    nLayer: options.layers ?? 2,
    nEmbd: options.embd ?? 64,
    nHead: options.heads ?? 4,
    nHeadKv: options.kvHeads ?? 2,
    nFf: options.ff ?? 128,
    vocabSize: options.vocab ?? BYTE_TOKENIZER_BASE_VOCAB,
    contextLength: options.contextLength ?? 4096,
    ropeTheta: 10_000,
    rmsEps: 1e-5,
  });
}

/**
 * Writes a random llama model with the byte tokenizer and a ChatML template. Deterministic: the same
 * options always give a byte-identical file. Returns the config it used.
 */
export async function createTinyModel(options: TinyModelOptions): Promise<LlamaConfig> {
  const config = tinyModelConfig(options);
  const tokenizer = createByteTokenizer(config.vocabSize);
  await writeLlamaGguf(options.out, {
    config,
    weights: createRandomHfLlamaWeights(config, options.seed ?? 0),
    dtype: options.dtype ?? "f32",
    tokenizer,
    chatTemplate: CHATML_TEMPLATE,
    name: options.name ?? "lori-tiny",
  });
  return config;
}
