import type { ContentfulStatusCode } from "hono/utils/http-status";

/** OpenAI error `type`s we emit. */
export type ApiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

/** Every failure an HTTP handler can raise; `onError` turns it into the OpenAI error envelope. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly type: ApiErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

// One constructor per error kind keeps status codes decided in exactly one place.
export const apiErrors = {
  invalidJson: (detail: string) =>
    new ApiError(400, `Request body is not valid JSON: ${detail}`, "invalid_request_error", "invalid_json"),
  invalidField: (param: string | null, message: string) =>
    new ApiError(400, message, "invalid_request_error", "invalid_value", param),
  contextLengthExceeded: (promptTokens: number, contextSize: number) =>
    new ApiError(
      400,
      `This model's maximum context length is ${contextSize} tokens, but the prompt has ${promptTokens} tokens.`,
      "invalid_request_error",
      "context_length_exceeded",
      "messages",
    ),
  unauthorized: () =>
    new ApiError(401, "Missing or invalid API key (send 'Authorization: Bearer <key>').", "authentication_error", "invalid_api_key"),
  modelNotFound: (model: string) =>
    new ApiError(404, `The model '${model}' does not exist.`, "not_found_error", "model_not_found", "model"),
  routeNotFound: (method: string, path: string) =>
    new ApiError(404, `No route for ${method} ${path}.`, "not_found_error", "route_not_found"),
  payloadTooLarge: (limitBytes: number) =>
    new ApiError(413, `Request body exceeds the limit of ${limitBytes} bytes.`, "invalid_request_error", "payload_too_large"),
  queueFull: (retryAfterSeconds: number) =>
    new ApiError(
      429,
      "The server is at capacity: all sequences are busy and the queue is full. Retry later.",
      "rate_limit_error",
      "queue_full",
      null,
      { "Retry-After": String(retryAfterSeconds) },
    ),
  adapterNotFound: (name: string) =>
    new ApiError(404, `The adapter '${name}' does not exist.`, "not_found_error", "adapter_not_found", "adapter"),
  adapterIncompatible: (message: string) =>
    new ApiError(400, message, "invalid_request_error", "adapter_incompatible", "adapter"),
  adapterExists: (name: string) =>
    new ApiError(409, `An adapter named '${name}' already exists.`, "invalid_request_error", "adapter_exists", "name"),
  adminRequired: () =>
    new ApiError(403, "This operation needs an admin API key.", "permission_error", "admin_required"),
  notReady: () => new ApiError(503, "The server is still loading its models.", "server_error", "not_ready"),
  shuttingDown: () => new ApiError(503, "The server is shutting down.", "server_error", "shutting_down"),
  internal: (message: string) => new ApiError(500, message, "server_error", "internal_error"),
} as const;
