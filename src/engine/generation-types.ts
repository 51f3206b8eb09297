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
  /** How many alternatives to report per token; null = no logprobs at all. */
  readonly topLogprobs: number | null;
  readonly output: OutputConstraint;
}

export type OutputConstraint =
  | { readonly kind: "text" }
  | { readonly kind: "json" }
  | { readonly kind: "json_schema"; readonly schema: Readonly<Record<string, unknown>> };

export interface TokenLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: number[];
}

export interface GeneratedPiece {
  readonly text: string;
  /** One entry per token that completed in this piece, when logprobs were requested. */
  readonly logprobs: ReadonlyArray<TokenLogprob & { readonly top: readonly TokenLogprob[] }>;
}

export type FinishReason = "stop" | "length";

export interface GenerationResult {
  readonly finishReason: FinishReason;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens whose KV state was reused from the sequence's previous request. */
  readonly cachedPromptTokens: number;
}
