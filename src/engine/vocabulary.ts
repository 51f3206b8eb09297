import type { LlamaModel } from "node-llama-cpp";

/** How many tokens the model's vocabulary has (ids are 0..size-1); 0 for a model without a vocabulary. */
export function vocabularySize(model: LlamaModel): number {
  return model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
}
