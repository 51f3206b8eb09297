import { Hono } from "hono";
import type { AppDeps } from "../http/app-deps.js";

export function healthRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  // Liveness: the process answers. Never behind auth, never dependent on models.
  app.get("/health", (c) => c.json({ status: "ok" }));
  // Readiness: models loaded and not draining, so a load balancer may send traffic.
  app.get("/ready", (c) => {
    const ready = deps.lifecycle.ready && !deps.lifecycle.draining;
    const models = deps.models.list().map((m) => {
      const stats = m.lanes.stats;
      return { id: m.spec.id, busy_sequences: stats.busySequences, queued_requests: stats.queued, lanes: stats.lanes };
    });
    return c.json({ status: ready ? "ready" : deps.lifecycle.draining ? "draining" : "loading", models }, ready ? 200 : 503);
  });
  return app;
}
