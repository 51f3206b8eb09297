import { randomBytes } from "node:crypto";
import { GenerationJob, type GenerationRequest } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";
import type { ServedModel } from "../engine/served-model.js";
import { ShuttingDownError } from "../engine/engine-errors.js";
import { apiErrors } from "../http/api-error.js";
import type { AppDeps } from "../http/app-deps.js";

export function resolveModel(deps: AppDeps, id: string | undefined): ServedModel {
  if (!deps.lifecycle.ready) throw apiErrors.notReady();
  const served = deps.models.get(id);
  if (!served) throw apiErrors.modelNotFound(id ?? "");
  return served;
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

export function logRequest(
  deps: AppDeps,
  fields: { id: string; route: string; model: string; timings: Timings; result?: GenerationResult; stream: boolean },
): void {
  const now = performance.now();
  deps.logger.info("request", {
    id: fields.id,
    route: fields.route,
    model: fields.model,
    stream: fields.stream,
    prompt_tokens: fields.result?.promptTokens,
    completion_tokens: fields.result?.completionTokens,
    cached_tokens: fields.result?.cachedPromptTokens,
    finish_reason: fields.result?.finishReason ?? "cancelled",
    ttft_ms: fields.timings.firstTokenAt === null ? null : round(fields.timings.firstTokenAt - fields.timings.startedAt),
    total_ms: round(now - fields.timings.startedAt),
  });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
