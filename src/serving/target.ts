import { AdapterForbiddenError } from "../engine/adapters/adapter-errors.js";
import type { ResolvedAdapterSet } from "../engine/adapters/adapter-set-compiler.js";
import type { ServedModel } from "../engine/served-model.js";
import { apiErrors } from "../errors/api-error.js";
import { type AdapterField, normalizeAdapterField } from "../protocol/adapter-field.js";
import { mayUseAdapter, type Principal } from "./principal.js";
import type { ServingDeps } from "./serving-deps.js";

/** The model and adapter set one request runs on. */
export interface Target {
  readonly served: ServedModel;
  readonly adapters: ResolvedAdapterSet;
  /** The `model` a response names: what the client asked for (an adapter's id stays the adapter's), as vLLM does. */
  readonly responseModel: string;
}

/**
 * The model and adapter set a request runs on. `model` may name a served model or an adapter (which then
 * joins the adapter list and implies the model it was built for), so clients that cannot send extra fields
 * still reach adapters. Adapters outside the caller's allow-list do not exist for it.
 */
export function resolveTarget(deps: ServingDeps, principal: Principal, modelId: string | undefined, field: AdapterField): Target {
  if (!deps.lifecycle.ready) throw apiErrors.notReady();
  // Fine-tuned models (`ft:<base>:<suffix>:<job>`) are adapters stored under a shorter name.
  const stored = (name: string) => deps.fineTunedModels?.adapterForModelId(name) ?? name;
  if (modelId !== undefined) modelId = stored(modelId);
  const selections = normalizeAdapterField(field).map((s) => ({ ...s, name: stored(s.name) }));
  let served = deps.models.get(modelId);
  if (!served && modelId !== undefined) {
    const entry = deps.adapters.get(modelId);
    if (!entry || !mayUseAdapter(principal, modelId)) throw apiErrors.modelNotFound(modelId);
    served = baseFor(deps, entry.config.lori?.base_fingerprint?.sha256);
    if (!selections.some((s) => s.name === modelId)) selections.push({ name: modelId, weight: 1 });
  }
  if (!served) throw apiErrors.modelNotFound(modelId ?? "");
  for (const { name } of selections) if (!mayUseAdapter(principal, name)) throw new AdapterForbiddenError(name);
  return { served, adapters: served.adapters.resolve(selections), responseModel: modelId ?? served.spec.id };
}

function baseFor(deps: ServingDeps, fingerprint: string | undefined): ServedModel | undefined {
  const models = deps.models.list();
  return models.find((m) => m.fingerprint.sha256 === fingerprint) ?? models[0];
}
