import {
  LlamaGrammarEvaluationState,
  type ControlledEvaluateInputItem,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type SequenceEvaluateOptions,
  type Token,
  TokenBias,
} from "node-llama-cpp";
import type {
  FinishReason,
  GeneratedPiece,
  GenerationParams,
  GenerationResult,
  PositionLogprobs,
  PromptPositionLogprobs,
  TokenLogprob,
} from "./generation-types.js";
import { tokenPiece } from "./token-pieces.js";
import { sharedPrefixLength } from "./token-prefix.js";
import { StopStringMatcher, TokenTextStream } from "./token-text-stream.js";

export interface GenerateInput {
  readonly model: LlamaModel;
  readonly sequence: LlamaContextSequence;
  readonly promptTokens: readonly Token[];
  readonly params: GenerationParams;
  readonly grammar?: LlamaGrammar;
  /** Tokens that end generation besides the model's EOG tokens (e.g. a chat template's end-of-turn). */
  readonly stopTokens: ReadonlySet<Token>;
  readonly signal: AbortSignal;
}

/** What node-llama-cpp's evaluation yields: a token, or with metadata its next-token probabilities. */
type EvaluatedToken = Token | { token: Token; probabilities?: Map<Token, number> };

/**
 * Generates text for one request on one leased sequence. Reuses the sequence's KV cache for the longest
 * common prefix with the previous request (the caller guarantees the sequence's adapter set never changed
 * since that cache was built). Yields text pieces; returns the usage and finish reason.
 */
export async function* generate(input: GenerateInput): AsyncGenerator<GeneratedPiece, GenerationResult, void> {
  const { model, sequence, promptTokens, params, signal } = input;
  const wantLogprobs = params.topLogprobs !== null;
  const wantPromptLogprobs = wantLogprobs && params.promptLogprobs === true;
  // Scoring the prompt needs logits at every prompt position, and reused KV cells have none: start afresh.
  const cachedPromptTokens = await reusePrefix(sequence, promptTokens, wantPromptLogprobs ? 0 : promptTokens.length - 1);
  const generated: Token[] = [];
  const text = new TokenTextStream(model, promptTokens);
  const stops = new StopStringMatcher(params.stop);
  let pendingLogprobs: PositionLogprobs[] = [];
  let finishReason: FinishReason = "stop";
  let stoppedBy: { stopString?: string; stopToken?: number } = {};

  const room = sequence.contextSize - promptTokens.length;
  const limit = Math.min(params.maxTokens ?? room, room);
  let evaluated = cachedPromptTokens;
  if (wantPromptLogprobs) {
    const promptLogprobs = await scorePrompt(model, sequence, promptTokens, params.topLogprobs ?? 0, signal);
    if (promptLogprobs === null) return finish("cancelled");
    evaluated = promptTokens.length - 1;
    yield { text: "", logprobs: [], promptLogprobs };
  }
  if (signal.aborted) return finish("cancelled");
  if (limit <= 0) return finish("length");

  const newTokens = promptTokens.slice(evaluated) as Token[];
  const options = evaluateOptions(model, params, generated, input.grammar);
  // Probabilities cost a full-vocabulary pass per token, so only ask for them when logprobs are wanted.
  // Without logprobs node-llama-cpp's plain token iterator is used as it is (no wrapper generator per token).
  const iterator: AsyncGenerator<EvaluatedToken, void, void> = wantLogprobs
    ? sequence.evaluateWithMetadata(newTokens, { probabilities: true } as const, options)
    : (sequence.evaluate(newTokens, options) as AsyncGenerator<Token, void, void>);

  // The next token's decode is requested before this token's text is made, matched and handed on, so that
  // per-token work on the main thread overlaps the decode on the engine's thread instead of adding to it.
  // At most one decode is ahead; ending on a stop string lets it finish (one token of KV the next request
  // may erase) before the iterator is closed, so the sequence is never released with a decode queued.
  let pending: Promise<IteratorResult<EvaluatedToken, void>> | undefined = iterator.next();
  try {
    while (pending) {
      const step = await pending;
      pending = undefined;
      if (step.done) break;
      const output = step.value;
      if (signal.aborted) {
        finishReason = "cancelled";
        break;
      }
      const token = typeof output === "number" ? output : output.token;
      if ((model.isEogToken(token) || input.stopTokens.has(token)) && !params.ignoreEos) {
        stoppedBy = { stopToken: token };
        break;
      }
      // pushed first: the repeat penalty reads `generated` when it samples the next token
      generated.push(token);
      if (generated.length < limit) {
        pending = iterator.next();
        // a rejection is seen where it is awaited; one left behind by a stop must not go unhandled
        pending.catch(() => undefined);
      }
      if (typeof output !== "number") pendingLogprobs.push(positionLogprobs(model, token, output.probabilities, params.topLogprobs ?? 0));
      const emit = stops.push(text.push(token));
      const stopString = stops.matched;
      if (emit.length > 0 || (stopString !== undefined && pendingLogprobs.length > 0)) {
        yield { text: emit, logprobs: pendingLogprobs };
        pendingLogprobs = [];
      }
      if (stopString !== undefined) {
        stoppedBy = { stopString };
        return finish("stop");
      }
      if (generated.length >= limit) {
        finishReason = "length";
        break;
      }
    }
    // An abort can also end node-llama-cpp's iterator without another token.
    if (signal.aborted) finishReason = "cancelled";
    const rest = stops.flush();
    if (finishReason !== "cancelled" && (rest.length > 0 || pendingLogprobs.length > 0)) {
      yield { text: rest, logprobs: pendingLogprobs };
    }
    return finish(finishReason);
  } finally {
    await iterator.return();
  }

  function finish(reason: FinishReason): GenerationResult {
    return {
      finishReason: reason,
      promptTokens: promptTokens.length,
      completionTokens: generated.length,
      cachedPromptTokens,
      ...(reason === "stop" ? stoppedBy : {}),
    };
  }
}

/** Prompt positions scored per native call: bounds the full-vocabulary probability maps held at once. */
const SCORE_CHUNK = 64;

/**
 * Evaluates every prompt token but the last (which the generation loop evaluates), asking for the full
 * next-token distribution after each, and returns each prompt token's log-prob with the top alternatives
 * (the first token has none). The distribution is the model's own (greedy sampler: no temperature,
 * top-k or penalties), which is what OpenAI and vLLM report for prompt tokens. Null when aborted meanwhile.
 */
async function scorePrompt(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  promptTokens: readonly Token[],
  topCount: number,
  signal: AbortSignal,
): Promise<PromptPositionLogprobs[] | null> {
  const first = tokenPiece(model, promptTokens[0]!);
  const scored: PromptPositionLogprobs[] = [{ token: first.text, bytes: first.bytes, special: first.special, logprob: null, top: null }];
  const last = promptTokens.length - 1;
  for (let start = 0; start < last; start += SCORE_CHUNK) {
    if (signal.aborted) return null;
    const end = Math.min(last, start + SCORE_CHUNK);
    const input = promptTokens
      .slice(start, end)
      .map((token): ControlledEvaluateInputItem => [token, { generateNext: { probabilities: true } }]);
    const results = await sequence.controlledEvaluate(input);
    for (let i = start; i < end; i++) {
      const probabilities = results[i - start]?.next.probabilities;
      scored.push(positionLogprobs(model, promptTokens[i + 1]!, probabilities, topCount));
    }
  }
  return scored;
}

/**
 * Keeps the KV cells shared with the new prompt, at most `keepAtMost` of them (always fewer than the prompt:
 * the last prompt token is re-evaluated to get the first next-token distribution).
 */
async function reusePrefix(sequence: LlamaContextSequence, promptTokens: readonly Token[], keepAtMost: number): Promise<number> {
  const existing = sequence.contextTokens;
  const common = Math.min(sharedPrefixLength(existing, promptTokens), keepAtMost);
  if (common < existing.length) await sequence.eraseContextTokenRanges([{ start: common, end: existing.length }]);
  return common;
}

function evaluateOptions(
  model: LlamaModel,
  params: GenerationParams,
  generated: Token[],
  grammar: LlamaGrammar | undefined,
): SequenceEvaluateOptions {
  const options: SequenceEvaluateOptions = {
    temperature: params.temperature,
    ...(params.topK !== undefined ? { topK: params.topK } : {}),
    ...(params.topP !== undefined ? { topP: params.topP } : {}),
    ...(params.minP !== undefined ? { minP: params.minP } : {}),
    ...(params.seed !== undefined ? { seed: params.seed } : {}),
    contextShift: { size: 0 },
    // node-llama-cpp ignores a "never" bias on EOS/EOT, so end-of-generation tokens are yielded and we decide:
    // stop, or (ignore_eos) keep them as ordinary tokens and generate on.
    yieldEogToken: true,
  };
  if (params.logitBias && params.logitBias.size > 0) {
    const bias = TokenBias.for(model);
    for (const [token, logit] of params.logitBias) bias.set(token as Token, logit === -Infinity ? "never" : { logit });
    options.tokenBias = bias;
  }
  if (grammar) options.grammarEvaluationState = new LlamaGrammarEvaluationState({ model, grammar });
  if (params.repeatPenalty !== 1 || params.presencePenalty !== 0 || params.frequencyPenalty !== 0) {
    options.repeatPenalty = {
      punishTokens: () => generated,
      maxPunishTokens: 256,
      penalty: params.repeatPenalty,
      frequencyPenalty: params.frequencyPenalty,
      presencePenalty: params.presencePenalty,
    };
  }
  return options;
}

/**
 * One position's logprobs: the token there and the `topCount` most likely tokens. `probabilities` is sorted,
 * most likely first (node-llama-cpp's contract). A token the sampler filtered out has no probability and is
 * reported as -9999, OpenAI's value for "very unlikely".
 */
function positionLogprobs(
  model: LlamaModel,
  token: Token,
  probabilities: Map<Token, number> | undefined,
  topCount: number,
): PositionLogprobs {
  const describe = (t: Token, p: number): TokenLogprob => {
    const { text, bytes, special } = tokenPiece(model, t);
    return { token: text, logprob: p > 0 ? Math.log(p) : -9999, bytes, special };
  };
  const top: TokenLogprob[] = [];
  if (probabilities) {
    for (const [t, p] of probabilities) {
      if (top.length >= topCount) break;
      top.push(describe(t, p));
    }
  }
  return { ...describe(token, probabilities?.get(token) ?? 0), top };
}
