/** Engine failures the HTTP layer maps to statuses; the engine itself knows nothing of HTTP. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super("queue full");
    this.name = "QueueFullError";
  }
}

export class RequestAbortedError extends Error {
  constructor() {
    super("request aborted");
    this.name = "RequestAbortedError";
  }
}

export class ContextLengthExceededError extends Error {
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
  ) {
    super(`prompt of ${promptTokens} tokens does not fit a context of ${contextSize}`);
    this.name = "ContextLengthExceededError";
  }
}

export class ShuttingDownError extends Error {
  constructor() {
    super("shutting down");
    this.name = "ShuttingDownError";
  }
}

export class InvalidJsonSchemaError extends Error {
  constructor(detail: string) {
    super(`unsupported JSON schema: ${detail}`);
    this.name = "InvalidJsonSchemaError";
  }
}
