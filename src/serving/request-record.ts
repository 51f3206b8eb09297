import type { ResolvedAdapterSet } from "../engine/adapters/adapter-set-compiler.js";
import type { GenerationJob } from "../engine/generation-job.js";
import type { GenerationResult } from "../engine/generation-types.js";
import type { Timings } from "./job-output.js";
import type { ServingDeps } from "./serving-deps.js";

/** One JSON log line and the request metrics, when a request ends for any reason. */
export function recordRequest(
  deps: ServingDeps,
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
