import { defaultArchConfig, type ArchModelConfig, type ModelArchitecture } from "./arch-config.js";
import { BYTE_TOKENIZER_BASE_VOCAB, CHATML_TEMPLATE, createByteTokenizer } from "./byte-tokenizer.js";
import { createRandomHfArchWeights } from "./hf-arch-weights.js";
import { createTinyModel, type TinyModelOptions } from "./tiny-model.js";
import { writeArchGguf } from "./write-arch-gguf.js";

export interface ArchTinyModelOptions extends TinyModelOptions {
  /** Default "llama" (createTinyModel). */
  readonly architecture?: ModelArchitecture;
  /** Head size for the families that decouple it (qwen3, gemma2, gemma3); default embd / heads. */
  readonly headDim?: number;
}

/** The config createArchModel uses for `options` (defaults applied, validated). */
export function archTinyModelConfig(architecture: ModelArchitecture, options: Omit<ArchTinyModelOptions, "out">): ArchModelConfig {
  return defaultArchConfig(architecture, {
    nLayer: options.layers ?? 2,
    nEmbd: options.embd ?? 64,
    nHead: options.heads ?? 4,
    nHeadKv: options.kvHeads ?? 2,
    nFf: options.ff ?? 128,
    vocabSize: options.vocab ?? BYTE_TOKENIZER_BASE_VOCAB,
    contextLength: options.contextLength ?? 4096,
    ...(options.headDim !== undefined ? { headDim: options.headDim } : {}),
  });
}

/**
 * Writes a random model of `options.architecture` with the byte tokenizer and a ChatML template; llama is
 * createTinyModel's file, unchanged. Deterministic in the options. Returns the config it used.
 */
export async function createArchModel(options: ArchTinyModelOptions): Promise<ArchModelConfig> {
  const architecture = options.architecture ?? "llama";
  const config = archTinyModelConfig(architecture, options);
  if (architecture === "llama") {
    await createTinyModel(options);
    return config;
  }
  await writeArchGguf(options.out, {
    config,
    weights: createRandomHfArchWeights(config, options.seed ?? 0),
    dtype: options.dtype ?? "f32",
    tokenizer: createByteTokenizer(config.vocabSize),
    chatTemplate: CHATML_TEMPLATE,
    name: options.name ?? "lori-tiny",
  });
  return config;
}
