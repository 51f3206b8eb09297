import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ERROR_KINDS, type ErrorKind } from "./error-kinds.js";

/**
 * Every failure an HTTP handler can raise; `onError` turns it into the OpenAI error envelope. Its status
 * and `type` come from its kind (src/errors/error-kinds.ts), never chosen here.
 */
export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get status(): ContentfulStatusCode {
    // 499 (client closed the request) is not in hono's list of statuses, but Node sends any 3-digit status.
    return ERROR_KINDS[this.kind].status as ContentfulStatusCode;
  }

  get type(): string {
    return ERROR_KINDS[this.kind].type;
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

// One constructor per error the HTTP layer raises itself; each names its kind, never a status.
export const apiErrors = {
  invalidJson: (detail: string) => new ApiError("invalid_request", `Request body is not valid JSON: ${detail}`, "invalid_json"),
  invalidField: (param: string | null, message: string) => new ApiError("invalid_request", message, "invalid_value", param),
  invalidBody: (message: string) => new ApiError("invalid_request", message, "invalid_body"),
  contextLengthExceeded: (promptTokens: number, contextSize: number) =>
    new ApiError(
      "invalid_request",
      `This model's maximum context length is ${contextSize} tokens, but the prompt has ${promptTokens} tokens.`,
      "context_length_exceeded",
      "messages",
    ),
  unauthorized: () =>
    new ApiError("unauthenticated", "Missing or invalid API key (send 'Authorization: Bearer <key>').", "invalid_api_key"),
  modelNotFound: (model: string) => new ApiError("not_found", `The model '${model}' does not exist.`, "model_not_found", "model"),
  routeNotFound: (method: string, path: string) => new ApiError("not_found", `No route for ${method} ${path}.`, "route_not_found"),
  payloadTooLarge: (limitBytes: number) =>
    new ApiError("payload_too_large", `Request body exceeds the limit of ${limitBytes} bytes.`, "payload_too_large"),
  queueFull: (retryAfterSeconds: number) =>
    new ApiError(
      "rate_limited",
      "The server is at capacity: all sequences are busy and the queue is full. Retry later.",
      "queue_full",
      null,
      { "Retry-After": String(retryAfterSeconds) },
    ),
  adapterNotFound: (name: string) => new ApiError("not_found", `The adapter '${name}' does not exist.`, "adapter_not_found", "adapter"),
  adapterIncompatible: (message: string) => new ApiError("invalid_request", message, "adapter_incompatible", "adapter"),
  adapterExists: (name: string) => new ApiError("conflict", `An adapter named '${name}' already exists.`, "adapter_exists", "name"),
  adminRequired: () => new ApiError("forbidden", "This operation needs an admin API key.", "admin_required"),
  notReady: () => new ApiError("unavailable", "The server is still loading its models.", "not_ready"),
  shuttingDown: () => new ApiError("unavailable", "The server is shutting down.", "shutting_down"),
  cancelled: () => new ApiError("cancelled", "The request was cancelled by the client.", "request_cancelled"),
  storageFull: () =>
    new ApiError("storage_full", "The server's disk is full: nothing was written. Retry after space is freed.", "storage_full"),
  internal: (message: string) => new ApiError("internal", message, "internal_error"),
} as const;
