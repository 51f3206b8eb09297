/** Who is calling: decided once by the HTTP auth middleware, read by everything that serves a request. */
export interface Principal {
  readonly role: "admin" | "user";
  /** Adapters this caller may see and use; null = all. */
  readonly adapters: ReadonlySet<string> | null;
}

export const ANONYMOUS_ADMIN: Principal = { role: "admin", adapters: null };

export function mayUseAdapter(principal: Principal, name: string): boolean {
  return principal.adapters === null || principal.adapters.has(name);
}
