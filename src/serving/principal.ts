/** Who is calling: decided once by the HTTP auth middleware, read by everything that serves a request. */
export interface Principal {
  readonly role: "admin" | "user";
  /** Adapters this caller may see and use; null = all. */
  readonly adapters: ReadonlySet<string> | null;
  /** A stable id of the key (never the key itself): owns the files, jobs and adapters it creates. */
  readonly id?: string;
  /** May upload training files and start fine-tuning jobs (admins may anyway). */
  readonly train?: boolean;
  /**
   * A per-adapter decision that overrides `adapters` (true = may use, false = does not exist for this caller),
   * or undefined to fall back to it: fine-tuned adapters belong to the key that trained them.
   */
  readonly adapterAccess?: (name: string) => boolean | undefined;
}

export const ANONYMOUS_ADMIN: Principal = { role: "admin", adapters: null, id: "admin" };

export function mayUseAdapter(principal: Principal, name: string): boolean {
  const decided = principal.adapterAccess?.(name);
  if (decided !== undefined) return decided;
  return principal.adapters === null || principal.adapters.has(name);
}

export function mayTrain(principal: Principal): boolean {
  return principal.role === "admin" || principal.train === true;
}
