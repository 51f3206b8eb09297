import type { Token } from "node-llama-cpp";
import { completionPromptTokens } from "../engine/prompt-tokens.js";
import type { ServedModel } from "../engine/served-model.js";
import { apiErrors } from "../errors/api-error.js";
import type { CompletionRequest } from "../protocol/completion-schema.js";

export interface CompletionPrompt {
  /** What `echo` returns. */
  readonly text: string;
  readonly tokens: Token[];
}

/**
 * The one prompt of a completions request. OpenAI also accepts a list of prompts and token-id prompts;
 * lm-evaluation-harness sends a list of one (text or token ids), so a list of one is accepted and a longer
 * one is refused by name. Text is tokenized exactly as written, with BOS when the model wants one (as
 * llama.cpp's server does); token ids are used as given.
 */
export function resolveCompletionPrompt(served: ServedModel, field: CompletionRequest["prompt"]): CompletionPrompt {
  const prompts = promptList(field);
  if (prompts.length !== 1) {
    throw apiErrors.invalidField("prompt", "Only one prompt per request is supported; send a string, or a list of one.");
  }
  const prompt = prompts[0]!;
  const model = served.model;
  if (typeof prompt === "string") {
    return { text: prompt, tokens: completionPromptTokens(model, prompt) };
  }
  const vocabularySize = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
  const bad = prompt.find((id) => id >= vocabularySize);
  if (bad !== undefined) {
    throw apiErrors.invalidField("prompt", `Token id ${bad} is outside the model's vocabulary (${vocabularySize} tokens).`);
  }
  const tokens = prompt as Token[];
  return { text: model.detokenize(tokens, false), tokens: [...tokens] };
}

/** OpenAI's prompt forms as a list: text, token ids, or a list of either. */
function promptList(field: CompletionRequest["prompt"]): Array<string | number[]> {
  if (typeof field === "string") return [field];
  if (field.every((item) => typeof item === "number")) return [field as number[]];
  return field as Array<string | number[]>;
}
