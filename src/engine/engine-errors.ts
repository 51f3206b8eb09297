/** Engine failures; each states its kind (src/errors/error-kinds.ts), the engine itself knows nothing of HTTP. */
export class QueueFullError extends Error {
  readonly kind = "rate_limited" as const;
  constructor(readonly retryAfterSeconds: number) {
    super("queue full");
    this.name = "QueueFullError";
  }
}

export class RequestAbortedError extends Error {
  readonly kind = "cancelled" as const;
  constructor() {
    super("request aborted");
    this.name = "RequestAbortedError";
  }
}

export class ContextLengthExceededError extends Error {
  readonly kind = "invalid_request" as const;
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
  ) {
    super(`prompt of ${promptTokens} tokens does not fit a context of ${contextSize}`);
    this.name = "ContextLengthExceededError";
  }
}

export class ShuttingDownError extends Error {
  readonly kind = "unavailable" as const;
  constructor() {
    super("shutting down");
    this.name = "ShuttingDownError";
  }
}

export class InvalidJsonSchemaError extends Error {
  readonly kind = "invalid_request" as const;
  constructor(detail: string) {
    super(`unsupported JSON schema: ${detail}`);
    this.name = "InvalidJsonSchemaError";
  }
}
