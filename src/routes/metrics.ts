import { Hono } from "hono";
import type { AppDeps } from "../http/app-deps.js";
import { mayUseAdapter } from "../serving/principal.js";

/** Every series, for scrapers that send no key (`--public-metrics`: the operator's choice). */
export function publicMetricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/metrics", (c) => c.body(deps.metrics.render(), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }));
  return app;
}

export function metricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/metrics", (c) => {
    const principal = c.get("principal");
    // Keys with an adapter allow-list (or fine-tuned adapters of other keys) see only the sets they may use.
    const unfiltered = principal.adapters === null && !principal.adapterAccess;
    const text = unfiltered ? deps.metrics.render() : deps.metrics.render((name) => mayUseAdapter(principal, name));
    return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return app;
}
