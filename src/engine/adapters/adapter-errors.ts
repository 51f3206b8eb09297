/** Adapter resolution failures, mapped to HTTP statuses in one place (http/error-handler.ts). */
export class AdapterNotFoundError extends Error {
  readonly kind = "not_found" as const;
  constructor(readonly adapter: string) {
    super(`The adapter '${adapter}' does not exist.`);
    this.name = "AdapterNotFoundError";
  }
}

export class AdapterIncompatibleError extends Error {
  readonly kind = "invalid_request" as const;
  constructor(
    readonly adapter: string,
    reason: string,
  ) {
    super(`The adapter '${adapter}' cannot be applied to this model: ${reason}`);
    this.name = "AdapterIncompatibleError";
  }
}

export class AdapterForbiddenError extends Error {
  readonly kind = "not_found" as const;
  constructor(readonly adapter: string) {
    super(`This API key may not use the adapter '${adapter}'.`);
    this.name = "AdapterForbiddenError";
  }
}
