import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * The one tokenizer of completion prompts, shared by /v1/completions and the trainer, so an adapter is
 * trained on exactly the tokens the server will feed it: the text as written (special tokens not parsed),
 * with BOS when the model wants one, as llama.cpp's server does.
 */
export function completionPromptTokens(model: LlamaModel, prompt: string): Token[] {
  const tokens = model.tokenize(prompt, false);
  const bos = model.tokens.bos;
  if (bos !== null && model.tokens.shouldPrependBosToken && tokens[0] !== bos) tokens.unshift(bos);
  return tokens;
}
