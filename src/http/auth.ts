import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import type { KeyGrant } from "../config/keys-file.js";
import { apiErrors } from "../errors/api-error.js";
import { ANONYMOUS_ADMIN, type Principal } from "../serving/principal.js";
import "./principal.js";

/**
 * When keys are configured, every route except the open ones needs `Authorization: Bearer KEY`; the key's
 * grant becomes the request's principal. Without keys everyone is an admin (local use).
 */
export function bearerAuth(grants: readonly KeyGrant[], openPaths: ReadonlySet<string>): MiddlewareHandler {
  const table = grants.map((grant) => ({
    digest: digest(grant.key),
    principal: {
      role: grant.role,
      adapters: grant.adapters ? new Set(grant.adapters) : null,
      // A digest prefix: stable across restarts, and it reveals nothing usable about the key.
      id: `key-${digest(grant.key).toString("hex").slice(0, 16)}`,
      train: grant.grants?.includes("train") ?? false,
    } satisfies Principal,
  }));
  return async (c, next) => {
    if (table.length === 0) {
      c.set("principal", ANONYMOUS_ADMIN);
      return next();
    }
    if (openPaths.has(c.req.path)) {
      c.set("principal", { role: "user", adapters: new Set<string>() });
      return next();
    }
    const match = /^Bearer\s+(.+)$/i.exec(c.req.header("authorization") ?? "");
    const offered = match ? digest(match[1]!.trim()) : null;
    // Fixed-length digests compared in constant time, so key length and prefixes do not leak.
    const found = offered ? table.find((row) => timingSafeEqual(row.digest, offered)) : undefined;
    if (!found) throw apiErrors.unauthorized();
    c.set("principal", found.principal);
    return next();
  };
}

function digest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}
