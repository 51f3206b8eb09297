import type { Principal } from "../serving/principal.js";

// The principal is a typed per-request variable: `c.get("principal")` is typed in every handler.
declare module "hono" {
  interface ContextVariableMap {
    principal: Principal;
  }
}
