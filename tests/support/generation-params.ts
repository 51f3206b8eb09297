import type { GenerationParams } from "../../src/engine/generation-types.js";

/** Greedy plain-text generation with no penalties: what the engine tests compare outputs under. */
export function greedyParams(maxTokens: number, overrides: Partial<GenerationParams> = {}): GenerationParams {
  return {
    maxTokens,
    temperature: 0,
    stop: [],
    presencePenalty: 0,
    frequencyPenalty: 0,
    repeatPenalty: 1,
    ignoreEos: true,
    topLogprobs: null,
    output: { kind: "text" },
    ...overrides,
  };
}
