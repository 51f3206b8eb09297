import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  ContextLengthExceededError,
  InvalidJsonSchemaError,
  QueueFullError,
  RequestAbortedError,
  ShuttingDownError,
} from "../engine/engine-errors.js";
import { AdapterForbiddenError, AdapterIncompatibleError, AdapterNotFoundError } from "../engine/adapters/adapter-errors.js";
import { LoraError } from "../lora/errors.js";
import type { Logger } from "../util/logger.js";
import { ApiError, apiErrors } from "./api-error.js";

/** Maps any thrown value to an ApiError; the single table of error kinds to statuses. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof QueueFullError) return apiErrors.queueFull(error.retryAfterSeconds);
  if (error instanceof ContextLengthExceededError) {
    return apiErrors.contextLengthExceeded(error.promptTokens, error.contextSize);
  }
  // A key that may not use an adapter must not learn that it exists either.
  if (error instanceof AdapterNotFoundError || error instanceof AdapterForbiddenError) return apiErrors.adapterNotFound(error.adapter);
  if (error instanceof AdapterIncompatibleError) return apiErrors.adapterIncompatible(error.message);
  if (error instanceof LoraError) {
    if (error.code === "ADAPTER_EXISTS") return new ApiError(409, error.message, "invalid_request_error", "adapter_exists", "name");
    return new ApiError(400, error.message, "invalid_request_error", error.code.toLowerCase(), null);
  }
  if (error instanceof InvalidJsonSchemaError) {
    return apiErrors.invalidField("response_format.json_schema.schema", error.message);
  }
  if (error instanceof ShuttingDownError) return apiErrors.shuttingDown();
  if (error instanceof RequestAbortedError) {
    return new ApiError(400, "The request was cancelled by the client.", "invalid_request_error", "request_cancelled");
  }
  if (error instanceof HTTPException) {
    return new ApiError(error.status as ApiError["status"], error.message || "HTTP error", "invalid_request_error", null);
  }
  return apiErrors.internal("Internal server error.");
}

export function errorResponder(logger: Logger) {
  return (error: unknown, c: Context): Response => {
    let apiError: ApiError;
    try {
      apiError = toApiError(error);
      if (apiError.status >= 500) {
        logger.error("request_failed", { path: c.req.path, error: error instanceof Error ? error.stack : String(error) });
      }
    } catch {
      // The handler must never throw itself: fall back to a fixed envelope.
      apiError = apiErrors.internal("Internal server error.");
    }
    return c.json(apiError.toJSON(), apiError.status, apiError.headers);
  };
}
