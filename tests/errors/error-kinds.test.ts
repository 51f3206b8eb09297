import { readFileSync } from "node:fs";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it } from "vitest";
import { AdapterForbiddenError } from "../../src/engine/adapters/adapter-errors.js";
import { QueueFullError, RequestAbortedError } from "../../src/engine/engine-errors.js";
import { ERROR_KINDS, errorKindOf, KindedError } from "../../src/errors/error-kinds.js";
import { scrubPaths } from "../../src/errors/scrub-paths.js";
import { apiErrors } from "../../src/errors/api-error.js";
import { toApiError } from "../../src/http/error-handler.js";
import { LoraError } from "../../src/lora/errors.js";

describe("the error table", () => {
  it("is documented in docs/errors.md row for row, both ways", () => {
    const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
    const rows = doc
      .split("\n")
      .filter((line) => /^\| [a-z_]+ \| \d{3} \|/.test(line))
      .map((line) =>
        line
          .split("|")
          .slice(1, -1)
          .map((cell) => cell.trim()),
      );
    const documented = Object.fromEntries(
      rows.map(([kind, status, type, exit, meaning]) => [kind, { status: Number(status), type, exitCode: Number(exit), meaning }]),
    );
    expect(documented).toEqual(ERROR_KINDS);
  });

  it("gives every kind a 4xx or 5xx status and a non-zero exit code", () => {
    for (const entry of Object.values(ERROR_KINDS)) {
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.status).toBeLessThan(600);
      expect(entry.exitCode).toBeGreaterThan(0);
    }
  });
});

describe("errorKindOf and toApiError", () => {
  it("maps a full disk to 507 storage_full, without the system's message", () => {
    const enospc = Object.assign(new Error("ENOSPC: no space left on device, write '/srv/lori/adapters/x/a.tmp'"), { code: "ENOSPC" });
    expect(errorKindOf(enospc)).toBe("storage_full");
    const api = toApiError(enospc);
    expect(api.status).toBe(507);
    expect(api.code).toBe("storage_full");
    expect(api.message).not.toContain("/srv");
  });

  it("answers 500 with a fixed message for anything unexpected", () => {
    const api = toApiError(new TypeError("Cannot read properties of undefined (reading 'x') at /app/dist/y.js:1"));
    expect(api.status).toBe(500);
    expect(api.message).toBe("Internal server error.");
  });

  it("keeps a malformed request parsed by hono a 400, not a 500", () => {
    const api = toApiError(new HTTPException(400, { message: "Malformed FormData request." }));
    expect(api.status).toBe(400);
    expect(api.type).toBe("invalid_request_error");
  });

  it("lets a LoraError state a server-side kind", () => {
    expect(toApiError(new LoraError("ADAPTER_BAD_TENSORS", "bad shape")).status).toBe(400);
    expect(toApiError(new LoraError("ADAPTER_BAD_TENSORS", "stored adapter unreadable", "internal")).status).toBe(500);
    expect(toApiError(new LoraError("ADAPTER_EXISTS", "taken")).status).toBe(409);
  });

  it("maps engine and adapter errors by their kind", () => {
    const full = toApiError(new QueueFullError(2));
    expect([full.status, full.headers["Retry-After"]]).toEqual([429, "2"]);
    expect(toApiError(new RequestAbortedError()).kind).toBe("cancelled");
    const forbidden = toApiError(new AdapterForbiddenError("secret"));
    expect([forbidden.status, forbidden.code]).toEqual([404, "adapter_not_found"]);
    expect(toApiError(new KindedError("conflict", "taken", "name_taken", "name")).param).toBe("name");
  });

  it("scrubs absolute paths from every message but a route's", () => {
    const api = toApiError(new LoraError("ADAPTER_BAD_CONFIG", "/srv/lori/adapters/math/adapter_config.json: not JSON"));
    expect(api.message).toBe("adapter_config.json: not JSON");
    expect(toApiError(apiErrors.routeNotFound("GET", "/v1/nothing/here")).message).toContain("/v1/nothing/here");
  });
});

describe("scrubPaths", () => {
  it("cuts absolute POSIX and Windows paths to their last component and leaves the rest", () => {
    expect(scrubPaths("cannot read /etc/passwd.")).toBe("cannot read passwd.");
    expect(scrubPaths("in '/tmp/a/b/' now")).toBe("in '(directory)' now");
    expect(scrubPaths("C:\\models\\x.gguf missing")).toBe("x.gguf missing");
    expect(scrubPaths("adapter 'a/b' and ratio 1/2 stay")).toBe("adapter 'a/b' and ratio 1/2 stay");
  });
});
