import { apiErrors } from "../errors/api-error.js";
import type { GenerationParams, OutputConstraint } from "../engine/generation-types.js";
import type { ChatCompletionRequest } from "./chat-schema.js";
import type { CompletionRequest } from "./completion-schema.js";

type CommonRequest = ChatCompletionRequest | CompletionRequest;

/** The one translation from an OpenAI request to engine parameters. */
export function toGenerationParams(
  request: CommonRequest,
  extra: {
    topLogprobs: number | null;
    /** Score the prompt tokens too (completions with echo and logprobs). */
    promptLogprobs?: boolean;
    output: OutputConstraint;
    maxTokens: number | null | undefined;
    /** The served model's vocabulary size, to refuse token ids it does not have. */
    vocabularySize: number;
  },
): GenerationParams {
  const stop = request.stop == null ? [] : typeof request.stop === "string" ? [request.stop] : request.stop;
  const temperature = request.temperature ?? 1;
  return {
    maxTokens: extra.maxTokens ?? null,
    temperature,
    ...(request.top_p != null ? { topP: request.top_p } : {}),
    ...(request.top_k != null && request.top_k > 0 ? { topK: request.top_k } : {}),
    ...(request.min_p != null ? { minP: request.min_p } : {}),
    // A fixed seed when none is given would make every sampled request identical; OpenAI samples freshly.
    seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    stop: stop.filter((s) => s.length > 0),
    presencePenalty: request.presence_penalty ?? 0,
    frequencyPenalty: request.frequency_penalty ?? 0,
    repeatPenalty: request.repeat_penalty ?? 1,
    ignoreEos: request.ignore_eos ?? false,
    ...(request.logit_bias ? { logitBias: logitBiasOf(request.logit_bias, extra.vocabularySize) } : {}),
    topLogprobs: extra.topLogprobs,
    promptLogprobs: extra.promptLogprobs ?? false,
    output: extra.output,
  };
}

export function chatOutputConstraint(request: ChatCompletionRequest): OutputConstraint {
  const format = request.response_format;
  if (!format || format.type === "text") return { kind: "text" };
  if (format.type === "json_object") return { kind: "json" };
  const schema = format.json_schema.schema;
  return schema ? { kind: "json_schema", schema } : { kind: "json" };
}

/**
 * OpenAI's `logit_bias` (token id -> -100..100, added to the logit) as engine biases. -100 bans the token
 * outright, as OpenAI documents it ("should result in a ban"), rather than merely making it unlikely.
 */
function logitBiasOf(field: Record<string, number>, vocabularySize: number): Map<number, number> {
  const biases = new Map<number, number>();
  for (const [key, bias] of Object.entries(field)) {
    const token = Number(key);
    if (!Number.isSafeInteger(token) || token >= vocabularySize) {
      throw apiErrors.invalidField("logit_bias", `Token id ${key} is outside the model's vocabulary (${vocabularySize} tokens).`);
    }
    if (bias !== 0) biases.set(token, bias <= -100 ? -Infinity : bias);
  }
  return biases;
}
