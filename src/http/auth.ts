import { timingSafeEqual, createHash } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { apiErrors } from "./api-error.js";

/** When keys are configured, every route except the liveness probe needs `Authorization: Bearer KEY`. */
export function bearerAuth(keys: readonly string[], openPaths: ReadonlySet<string>): MiddlewareHandler {
  const digests = keys.map(digest);
  return async (c, next) => {
    if (digests.length === 0 || openPaths.has(c.req.path)) return next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    const offered = match ? digest(match[1]!.trim()) : null;
    // Compare fixed-length digests in constant time so key length and prefix do not leak.
    if (!offered || !digests.some((d) => timingSafeEqual(d, offered))) throw apiErrors.unauthorized();
    return next();
  };
}

function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}
