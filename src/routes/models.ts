import { Hono } from "hono";
import type { AdapterEntry } from "../engine/adapters/adapter-registry.js";
import type { ServedModel } from "../engine/served-model.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { mayUseAdapter } from "../serving/principal.js";
import { loriSummary, parentModelId } from "./adapter-views.js";

/** Base models, then every adapter the caller may use, listed as a model whose `parent` is its base. */
export function modelsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const visibleAdapters = (principal: Parameters<typeof mayUseAdapter>[0]) =>
    deps.adapters.list().filter((entry) => mayUseAdapter(principal, entry.name) && !deps.models.get(entry.name));

  app.get("/v1/models", (c) => {
    const data = [
      ...deps.models.list().map(modelObject),
      ...visibleAdapters(c.get("principal")).map((entry) => adapterModelObject(deps, entry)),
    ];
    return c.json({ object: "list", data });
  });
  app.get("/v1/models/:id{.+}", (c) => {
    const id = c.req.param("id");
    const served = deps.models.get(id);
    if (served) return c.json(modelObject(served));
    const entry = visibleAdapters(c.get("principal")).find((e) => e.name === (deps.fineTunedModels?.adapterForModelId(id) ?? id));
    if (!entry) throw apiErrors.modelNotFound(id);
    return c.json(adapterModelObject(deps, entry));
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
      size_bytes: served.model.fileInsights.modelSize,
      max_lanes: served.lanes.stats.maxLanes,
    },
  };
}

function adapterModelObject(deps: AppDeps, entry: AdapterEntry) {
  return {
    // A fine-tuning job's result is listed under its `ft:` id.
    id: deps.fineTunedModels?.modelIdForAdapter(entry.name) ?? entry.name,
    object: "model" as const,
    created: Math.floor(entry.updatedAt / 1000),
    owned_by: "lori-server",
    parent: parentModelId(deps.models, entry),
    lori: loriSummary(entry),
  };
}
