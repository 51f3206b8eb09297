import { Hono } from "hono";
import type { ServedModel } from "../engine/served-model.js";
import { apiErrors } from "../http/api-error.js";
import type { AppDeps } from "../http/app-deps.js";

export function modelsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/v1/models", (c) => c.json({ object: "list", data: deps.models.list().map(modelObject) }));
  app.get("/v1/models/:id{.+}", (c) => {
    const id = c.req.param("id");
    const served = deps.models.get(id);
    if (!served) throw apiErrors.modelNotFound(id);
    return c.json(modelObject(served));
  });
  return app;
}

function modelObject(served: ServedModel) {
  return {
    id: served.spec.id,
    object: "model" as const,
    created: served.createdAt,
    owned_by: "lori-server",
    parent: null,
    meta: {
      context_length: served.contextSize,
      train_context_length: served.model.trainContextSize,
      parameters: served.model.fileInsights.modelSize,
      parallel: served.pool.size,
    },
  };
}
