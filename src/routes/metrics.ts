import { Hono } from "hono";
import type { AppDeps } from "../http/app-deps.js";

export function metricsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/metrics", (c) => c.body(deps.metrics.render(), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" }));
  return app;
}
