/** Engine-level generation parameters: the HTTP layer translates requests into this, nothing else does. */
export interface GenerationParams {
  /** Tokens to generate at most; null = until the sequence's context is full. */
  readonly maxTokens: number | null;
  readonly temperature: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly minP?: number;
  readonly seed?: number;
  readonly stop: readonly string[];
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  readonly repeatPenalty: number;
  readonly ignoreEos: boolean;
  /**
   * Token id -> amount added to its logit before sampling; -Infinity bans the token. node-llama-cpp leaves
   * end-of-generation tokens unbiased.
   */
  readonly logitBias?: ReadonlyMap<number, number>;
  /** How many alternatives to report per token; null = no logprobs at all. */
  readonly topLogprobs: number | null;
  /**
   * Also report the prompt tokens' log-probs (echo with logprobs). Costs a fresh evaluation of the whole
   * prompt: KV cells reused from an earlier request carry no logits.
   */
  readonly promptLogprobs?: boolean;
  readonly output: OutputConstraint;
}

export type OutputConstraint =
  | { readonly kind: "text" }
  | { readonly kind: "json" }
  | { readonly kind: "json_schema"; readonly schema: Readonly<Record<string, unknown>> }
  /** A grammar in llama.cpp's GBNF (a function call's arguments: see tool-arguments-grammar). */
  | { readonly kind: "gbnf"; readonly grammar: string };

export interface TokenLogprob {
  /** The token's exact text, or `bytes:\xNN...` when its bytes are not valid UTF-8 alone (see token-pieces). */
  readonly token: string;
  readonly logprob: number;
  /** The token's own bytes. */
  readonly bytes: readonly number[];
  /** A control token: `token` is its name, but it adds no text to the output. */
  readonly special: boolean;
}

/** A token at one position, with the most likely alternatives there (most likely first). */
export interface PositionLogprobs extends TokenLogprob {
  readonly top: readonly TokenLogprob[];
}

export interface GeneratedPiece {
  readonly text: string;
  /** One entry per token that completed in this piece, when logprobs were requested. */
  readonly logprobs: readonly PositionLogprobs[];
  /**
   * Only on the first piece of a request with `promptLogprobs`, before any generated text: one entry per prompt
   * token.
   */
  readonly promptLogprobs?: readonly PromptPositionLogprobs[];
}

/** A prompt token. The first one has no log-prob (nothing precedes it): `logprob` and `top` are null there. */
export interface PromptPositionLogprobs extends Omit<TokenLogprob, "logprob"> {
  readonly logprob: number | null;
  readonly top: readonly TokenLogprob[] | null;
}

/** `cancelled`: the client went away (aborted signal); for logs and metrics, never sent to a client. */
export type FinishReason = "stop" | "length" | "cancelled";

export interface GenerationResult {
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens whose KV state was reused from the sequence's previous request. */
  readonly cachedPromptTokens: number;
  /** The stop string that ended generation, when one did. */
  readonly stopString?: string;
  /** The end-of-generation or stop token that ended generation, when one did. */
  readonly stopToken?: number;
}
