import { randomBytes } from "node:crypto";
import { GenerationJob, type GenerationRequest } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";
import type { ServedModel } from "../engine/served-model.js";
import { AdapterForbiddenError } from "../engine/adapters/adapter-errors.js";
import type { ResolvedAdapterSet } from "../engine/adapters/adapter-set-compiler.js";
import { mayUseAdapter, type Principal } from "../http/principal.js";
import { normalizeAdapterField } from "../protocol/adapter-field.js";
import { ShuttingDownError } from "../engine/engine-errors.js";
import { apiErrors } from "../http/api-error.js";
import type { AppDeps } from "../http/app-deps.js";

export interface Target {
  readonly served: ServedModel;
  readonly adapters: ResolvedAdapterSet;
}

/**
 * The model and adapter set a request runs on. `model` may name a served model or an adapter (which then
 * joins the adapter list and implies the model it was built for), so clients that cannot send extra fields
 * still reach adapters. Adapters outside the caller's allow-list do not exist for it.
 */
export function resolveTarget(deps: AppDeps, principal: Principal, modelId: string | undefined, field: unknown): Target {
  if (!deps.lifecycle.ready) throw apiErrors.notReady();
  // Fine-tuned models (`ft:<base>:<suffix>:<job>`) are adapters stored under a shorter name.
  const stored = (name: string) => deps.fineTuning?.adapterForModelId(name) ?? name;
  if (modelId !== undefined) modelId = stored(modelId);
  const selections = normalizeAdapterField(field as Parameters<typeof normalizeAdapterField>[0]).map((s) => ({
    ...s,
    name: stored(s.name),
  }));
  let served = deps.models.get(modelId);
  if (!served && modelId !== undefined) {
    const entry = deps.adapters.get(modelId);
    if (!entry || !mayUseAdapter(principal, modelId)) throw apiErrors.modelNotFound(modelId);
    served = baseFor(deps, entry.config.lori?.base_fingerprint?.sha256);
    if (!selections.some((s) => s.name === modelId)) selections.push({ name: modelId, weight: 1 });
  }
  if (!served) throw apiErrors.modelNotFound(modelId ?? "");
  for (const { name } of selections) if (!mayUseAdapter(principal, name)) throw new AdapterForbiddenError(name);
  return { served, adapters: served.adapters.resolve(selections) };
}

function baseFor(deps: AppDeps, fingerprint: string | undefined): ServedModel | undefined {
  const models = deps.models.list();
  return models.find((m) => m.fingerprint.sha256 === fingerprint) ?? models[0];
}

export async function admitJob(deps: AppDeps, served: ServedModel, request: GenerationRequest): Promise<GenerationJob> {
  if (deps.lifecycle.draining) throw new ShuttingDownError();
  return GenerationJob.start(served, request);
}

export function completionId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString("hex")}`;
}

export interface Timings {
  readonly startedAt: number;
  firstTokenAt: number | null;
}

/** Runs a job to the end, collecting all text; always releases the sequence. */
export async function collectJob(
  job: GenerationJob,
  timings: Timings,
): Promise<{ text: string; pieces: GeneratedPiece[]; result: GenerationResult }> {
  const pieces: GeneratedPiece[] = [];
  try {
    const generator = job.pieces();
    for (;;) {
      const next = await generator.next();
      if (next.done) {
        return { text: pieces.map((p) => p.text).join(""), pieces, result: next.value };
      }
      timings.firstTokenAt ??= performance.now();
      pieces.push(next.value);
    }
  } finally {
    job.dispose();
  }
}

/** Streams a job's pieces through `mapPiece`, then `mapEnd` with the result. */
export async function* streamJob<T>(
  job: GenerationJob,
  timings: Timings,
  mapPiece: (piece: GeneratedPiece) => T,
  mapEnd: (result: GenerationResult) => Iterable<T>,
): AsyncGenerator<T, void, void> {
  try {
    const generator = job.pieces();
    for (;;) {
      const next = await generator.next();
      if (next.done) {
        yield* mapEnd(next.value);
        return;
      }
      timings.firstTokenAt ??= performance.now();
      yield mapPiece(next.value);
    }
  } finally {
    job.dispose();
  }
}

export function usageOf(result: GenerationResult) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
    prompt_tokens_details: { cached_tokens: result.cachedPromptTokens },
  };
}

/** One JSON log line and the request metrics, when a request ends for any reason. */
export function recordRequest(
  deps: AppDeps,
  fields: {
    id: string;
    route: "chat" | "completions";
    model: string;
    adapters: ResolvedAdapterSet;
    job: GenerationJob;
    timings: Timings;
    result?: GenerationResult;
    stream: boolean;
  },
): void {
  const now = performance.now();
  const adapterSet = deps.metrics.adapterSets.labelFor(
    fields.adapters.label,
    fields.adapters.members.map((m) => m.entry.name),
  );
  const finishReason = fields.result?.finishReason ?? "cancelled";
  const ttftMs = fields.timings.firstTokenAt === null ? null : fields.timings.firstTokenAt - fields.timings.startedAt;
  const totalMs = now - fields.timings.startedAt;
  const { metrics } = deps;
  metrics.requests.inc({ route: fields.route, adapter_set: adapterSet, finish_reason: finishReason });
  metrics.promptTokens.inc({ adapter_set: adapterSet }, fields.result?.promptTokens ?? 0);
  metrics.generationTokens.inc({ adapter_set: adapterSet }, fields.result?.completionTokens ?? 0);
  if (ttftMs !== null) metrics.timeToFirstToken.observe(ttftMs / 1000, { adapter_set: adapterSet });
  metrics.requestDuration.observe(totalMs / 1000, { adapter_set: adapterSet });
  const admission = fields.job.admission;
  deps.logger.info("request", {
    id: fields.id,
    route: fields.route,
    model: fields.model,
    adapters: fields.adapters.label || null,
    lane: admission.lane,
    swapped: admission.swapped,
    queue_ms: round(admission.waitMs),
    stream: fields.stream,
    prompt_tokens: fields.result?.promptTokens,
    completion_tokens: fields.result?.completionTokens,
    cached_tokens: fields.result?.cachedPromptTokens,
    finish_reason: finishReason,
    ttft_ms: ttftMs === null ? null : round(ttftMs),
    total_ms: round(totalMs),
  });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
