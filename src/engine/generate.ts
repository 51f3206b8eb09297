import {
  LlamaGrammarEvaluationState,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type SequenceEvaluateOptions,
  type Token,
} from "node-llama-cpp";
import type { FinishReason, GeneratedPiece, GenerationParams, GenerationResult, TokenLogprob } from "./generation-types.js";
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

/**
 * Generates text for one request on one leased sequence. Reuses the sequence's KV cache for the longest
 * common prefix with the previous request (the caller guarantees the sequence's adapter set never changed
 * since that cache was built). Yields text pieces; returns the usage and finish reason.
 */
export async function* generate(input: GenerateInput): AsyncGenerator<GeneratedPiece, GenerationResult, void> {
  const { model, sequence, promptTokens, params, signal } = input;
  const cachedPromptTokens = await reusePrefix(sequence, promptTokens);
  const generated: Token[] = [];
  const text = new TokenTextStream(model, promptTokens);
  const stops = new StopStringMatcher(params.stop);
  const wantLogprobs = params.topLogprobs !== null;
  let pendingLogprobs: Array<TokenLogprob & { top: TokenLogprob[] }> = [];
  let finishReason: FinishReason = "stop";

  const room = sequence.contextSize - promptTokens.length;
  const limit = Math.min(params.maxTokens ?? room, room);
  const newTokens = promptTokens.slice(cachedPromptTokens) as Token[];
  const options = evaluateOptions(model, params, generated, input.grammar);
  // Probabilities cost a full-vocabulary pass per token, so only ask for them when logprobs are wanted.
  const iterator = wantLogprobs
    ? sequence.evaluateWithMetadata(newTokens, { probabilities: true } as const, options)
    : withoutMetadata(sequence.evaluate(newTokens, options));

  try {
    if (limit <= 0) return finish("length");
    for await (const output of iterator) {
      if (signal.aborted) break;
      const token = output.token;
      if ((model.isEogToken(token) || input.stopTokens.has(token)) && !params.ignoreEos) break;
      generated.push(token);
      if (wantLogprobs) pendingLogprobs.push(tokenLogprob(model, token, output.probabilities, params.topLogprobs ?? 0));
      const { emit, stopped } = stops.push(text.push(token));
      if (emit.length > 0 || (stopped && pendingLogprobs.length > 0)) {
        yield { text: emit, logprobs: pendingLogprobs };
        pendingLogprobs = [];
      }
      if (stopped) return finish("stop");
      if (generated.length >= limit) {
        finishReason = "length";
        break;
      }
    }
    const rest = stops.flush();
    if (rest.length > 0 || pendingLogprobs.length > 0) yield { text: rest, logprobs: pendingLogprobs };
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
    };
  }
}

async function* withoutMetadata(
  tokens: AsyncGenerator<Token, void, void | Token | Token[]>,
): AsyncGenerator<{ token: Token; probabilities?: Map<Token, number> }, void, void> {
  try {
    for await (const token of tokens) yield { token };
  } finally {
    await tokens.return();
  }
}

/** Keeps the KV cells shared with the new prompt; always re-evaluates at least the last prompt token. */
async function reusePrefix(sequence: LlamaContextSequence, promptTokens: readonly Token[]): Promise<number> {
  const existing = sequence.contextTokens;
  const common = Math.min(sharedPrefixLength(existing, promptTokens), promptTokens.length - 1);
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
 * A token's text and bytes for logprobs. A byte-fallback token (`<0xE2>`) is part of a UTF-8 character and
 * has no text of its own: like OpenAI, we name it `bytes:\\xe2` and report its real byte, so two different
 * partial-character tokens never look the same.
 */
function tokenPiece(model: LlamaModel, token: Token): { text: string; bytes: number[] } {
  const piece = model.detokenize([token], true);
  if (piece.includes("\uFFFD")) {
    const vocabText = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.[token];
    const match = typeof vocabText === "string" ? /^<0x([0-9A-Fa-f]{2})>$/.exec(vocabText) : null;
    if (match) {
      const byte = parseInt(match[1]!, 16);
      return { text: `bytes:\\x${match[1]!.toLowerCase()}`, bytes: [byte] };
    }
  }
  return { text: piece, bytes: [...Buffer.from(piece, "utf8")] };
}

function tokenLogprob(
  model: LlamaModel,
  token: Token,
  probabilities: Map<Token, number> | undefined,
  topCount: number,
): TokenLogprob & { top: TokenLogprob[] } {
  const describe = (t: Token, p: number): TokenLogprob => {
    const { text, bytes } = tokenPiece(model, t);
    return { token: text, logprob: p > 0 ? Math.log(p) : -9999, bytes };
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
