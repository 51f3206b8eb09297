/**
 * The one table of error kinds. Every error the server or the CLI can raise resolves to a kind (see
 * `errorKindOf`), and the kind alone decides the HTTP status, the OpenAI error `type` and the CLI exit code.
 * 4xx kinds are what a client can fix; 5xx kinds are ours (or the machine's, for a full disk).
 */
export const ERROR_KINDS = {
  invalid_request: { status: 400, type: "invalid_request_error", exitCode: 2, meaning: "a field, flag or body is wrong" },
  invalid_input: { status: 400, type: "invalid_request_error", exitCode: 1, meaning: "a file or data set given to us is malformed" },
  unauthenticated: { status: 401, type: "authentication_error", exitCode: 2, meaning: "missing or wrong API key" },
  forbidden: { status: 403, type: "permission_error", exitCode: 2, meaning: "the key may not do this" },
  not_found: { status: 404, type: "not_found_error", exitCode: 1, meaning: "no such model, adapter, route or file" },
  request_timeout: { status: 408, type: "invalid_request_error", exitCode: 1, meaning: "the client sent its request too slowly" },
  conflict: { status: 409, type: "invalid_request_error", exitCode: 1, meaning: "the name is taken" },
  payload_too_large: { status: 413, type: "invalid_request_error", exitCode: 1, meaning: "the body or file exceeds a limit" },
  rate_limited: { status: 429, type: "rate_limit_error", exitCode: 1, meaning: "the queue is full; retry later" },
  cancelled: { status: 499, type: "invalid_request_error", exitCode: 130, meaning: "the client went away or interrupted" },
  internal: { status: 500, type: "server_error", exitCode: 1, meaning: "our fault: a bug or an unexpected failure" },
  unavailable: { status: 503, type: "server_error", exitCode: 3, meaning: "loading or shutting down; retry later" },
  device_unavailable: { status: 503, type: "server_error", exitCode: 4, meaning: "the requested GPU backend cannot be used here" },
  storage_full: { status: 507, type: "server_error", exitCode: 5, meaning: "the disk (or quota) is full" },
} as const satisfies Record<string, { status: number; type: string; exitCode: number; meaning: string }>;

export type ErrorKind = keyof typeof ERROR_KINDS;

/** An error that states its kind; `code` is a stable machine-readable detail, `param` the offending field. */
export class KindedError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = "KindedError";
  }
}

/** File-system failures that mean "no space left", whatever the call. */
const STORAGE_FULL_CODES = new Set(["ENOSPC", "EDQUOT"]);

/**
 * The kind of any thrown value: errors that carry a `kind` say it themselves; Node's ENOSPC/EDQUOT are a full
 * disk; everything else is our fault.
 */
export function errorKindOf(error: unknown): ErrorKind {
  if (error !== null && typeof error === "object") {
    const kind = (error as { kind?: unknown }).kind;
    if (typeof kind === "string" && kind in ERROR_KINDS) return kind as ErrorKind;
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && STORAGE_FULL_CODES.has(code)) return "storage_full";
  }
  return "internal";
}
