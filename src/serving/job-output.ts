import type { GenerationJob } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";

/** When a request started and when its first token came (for TTFT). */
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

/** Runs several jobs side by side to the end (the n choices of one request); always releases them all. */
export async function collectJobs(
  jobs: readonly GenerationJob[],
  timings: Timings,
): Promise<Array<{ text: string; pieces: GeneratedPiece[]; result: GenerationResult }>> {
  try {
    return await Promise.all(jobs.map((job) => collectJob(job, timings)));
  } finally {
    for (const job of jobs) job.dispose();
  }
}

/**
 * Yields the values of several generators as each becomes ready (the n choices of a streamed request, each
 * chunk tagged with its choice's index). Ending early (client gone) closes the sources without waiting for
 * them: their jobs are disposed by then, which ends any generation in flight.
 */
export function interleave<T>(sources: ReadonlyArray<AsyncGenerator<T, void, void>>): AsyncGenerator<T, void, void> {
  // One source (the usual n=1) needs no merging, nor a generator of its own passing every value on.
  return sources.length === 1 ? sources[0]! : merge(sources);
}

async function* merge<T>(sources: ReadonlyArray<AsyncGenerator<T, void, void>>): AsyncGenerator<T, void, void> {
  const pull = (index: number) => sources[index]!.next().then((result) => ({ index, result }));
  const pending = new Map(sources.map((_, index) => [index, pull(index)] as const));
  try {
    while (pending.size > 0) {
      const { index, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(index);
        continue;
      }
      pending.set(index, pull(index));
      yield result.value;
    }
  } finally {
    for (const index of pending.keys()) void sources[index]!.return(undefined).catch(() => undefined);
  }
}

/**
 * One result for the n choices of a request, for usage and logs: the prompt counts once (as OpenAI bills it),
 * completions add up; cancelled if any choice was.
 */
export function combineResults(results: readonly GenerationResult[]): GenerationResult {
  const first = results[0]!;
  return {
    finishReason: results.some((r) => r.finishReason === "cancelled") ? "cancelled" : first.finishReason,
    promptTokens: first.promptTokens,
    completionTokens: results.reduce((sum, r) => sum + r.completionTokens, 0),
    cachedPromptTokens: first.cachedPromptTokens,
  };
}
