import { Hono } from "hono";
import type { AppDeps } from "../http/app-deps.js";
import { mayUseAdapter } from "../serving/principal.js";

export function metricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/metrics", (c) => {
    const principal = c.get("principal");
    // Keys with an adapter allow-list see only the series of sets they may use.
    const text = principal.adapters === null ? deps.metrics.render() : deps.metrics.render((name) => mayUseAdapter(principal, name));
    return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return app;
}
