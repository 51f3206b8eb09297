import type { GenerationJob, GenerationRequest } from "../engine/generation-job.js";
import type { ServedModel } from "../engine/served-model.js";
import { apiErrors } from "../errors/api-error.js";
import { admitJob } from "./admission.js";
import type { ServingDeps } from "./serving-deps.js";

/**
 * Admits the `n` choices of one request, each as its own job on its own sequence (a sequence generates one
 * text). Choice i samples with seed + i, so each choice is reproducible on its own and the choices differ.
 * Same-set requests batch in one lane, so the choices run side by side there, spilling into further lanes
 * when n exceeds a lane's --parallel sequences.
 *
 * All choices are admitted before any generates, so that admission errors (queue full, bad schema) get a
 * proper HTTP status. That cannot deadlock as long as all n fit the model at once, which is why n beyond
 * --parallel × --max-lanes is refused rather than queued: the last choices would wait for sequences that only
 * this request's own, not yet consumed, choices hold. If any choice fails to be admitted, the others are
 * abandoned and released.
 */
export async function admitChoices(
  deps: ServingDeps,
  served: ServedModel,
  request: GenerationRequest,
  n: number,
): Promise<GenerationJob[]> {
  if (n === 1) return [await admitJob(deps, served, request)];
  const capacity = sequenceCapacity(served);
  if (n > capacity) {
    throw apiErrors.invalidField(
      "n",
      `n=${n} is more than this server runs at once for one model (${capacity} sequences: --parallel × --max-lanes); ask for at most ${capacity} choices or send several requests.`,
    );
  }
  const abandon = new AbortController();
  const signal = AbortSignal.any([request.signal, abandon.signal]);
  const admitted: GenerationJob[] = [];
  const admissions = Array.from({ length: n }, (_, index) =>
    admitJob(deps, served, {
      ...request,
      // GenerationJob may add a BOS to an empty prompt in place: each choice gets its own array.
      promptTokens: [...request.promptTokens],
      params: { ...request.params, ...(request.params.seed !== undefined ? { seed: request.params.seed + index } : {}) },
      signal,
    }).then((job) => {
      admitted.push(job);
      return job;
    }),
  );
  try {
    return await Promise.all(admissions);
  } catch (error) {
    abandon.abort();
    await Promise.allSettled(admissions);
    for (const job of admitted) job.dispose();
    throw error;
  }
}

/** Sequences the model can run at once: lanes at most, times the sequences of a lane. */
function sequenceCapacity(served: ServedModel): number {
  const stats = served.lanes.stats;
  const perLane = Math.max(1, ...stats.bindings.map((lane) => lane.size));
  return stats.maxLanes * perLane;
}
