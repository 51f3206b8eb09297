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
import { errorKindOf } from "../errors/error-kinds.js";
import { scrubPaths } from "../errors/scrub-paths.js";
import type { Logger } from "../util/logger.js";
import { ApiError, apiErrors } from "../errors/api-error.js";

/**
 * Maps any thrown value to an ApiError. Status and type come from the error's kind (the one table in
 * src/errors/error-kinds.ts); this function only adds the envelope's `code` and `param`, and keeps server
 * paths and our own internals out of client-facing messages.
 */
export function toApiError(error: unknown): ApiError {
  const apiError = describe(error);
  if (apiError.code === "route_not_found") return apiError;
  const scrubbed = scrubPaths(apiError.message);
  if (scrubbed === apiError.message) return apiError;
  return new ApiError(apiError.kind, scrubbed, apiError.code, apiError.param, apiError.headers);
}

function describe(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof QueueFullError) return apiErrors.queueFull(error.retryAfterSeconds);
  if (error instanceof ContextLengthExceededError) {
    return apiErrors.contextLengthExceeded(error.promptTokens, error.contextSize);
  }
  // A key that may not use an adapter must not learn that it exists either.
  if (error instanceof AdapterNotFoundError || error instanceof AdapterForbiddenError) return apiErrors.adapterNotFound(error.adapter);
  if (error instanceof AdapterIncompatibleError) return apiErrors.adapterIncompatible(error.message);
  if (error instanceof InvalidJsonSchemaError) {
    return apiErrors.invalidField("response_format.json_schema.schema", error.message);
  }
  if (error instanceof ShuttingDownError) return apiErrors.shuttingDown();
  if (error instanceof RequestAbortedError) return apiErrors.cancelled();
  if (error instanceof HTTPException) {
    // hono raises these for malformed requests it parses itself (multipart bodies, for one).
    return error.status >= 500
      ? apiErrors.internal("Internal server error.")
      : apiErrors.invalidBody(error.message || "Malformed request.");
  }
  const kind = errorKindOf(error);
  if (kind === "storage_full") return apiErrors.storageFull();
  if (kind === "internal") return apiErrors.internal("Internal server error.");
  const { message, code, param } = error as { message: string; code?: unknown; param?: unknown };
  return new ApiError(kind, message, typeof code === "string" ? code.toLowerCase() : null, typeof param === "string" ? param : null);
}

export function errorResponder(logger: Logger) {
  return (error: unknown, c: Context): Response => {
    let apiError: ApiError;
    try {
      apiError = toApiError(error);
      if (apiError.status >= 500) {
        logger.error("request_failed", {
          path: c.req.path,
          kind: apiError.kind,
          error: error instanceof Error ? error.stack : String(error),
        });
      }
    } catch {
      // The handler must never throw itself: fall back to a fixed envelope.
      apiError = apiErrors.internal("Internal server error.");
    }
    return c.json(apiError.toJSON(), apiError.status, apiError.headers);
  };
}
