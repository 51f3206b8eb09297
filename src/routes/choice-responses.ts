import type { GenerationJob } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";
import { apiErrors } from "../errors/api-error.js";
import { sseResponse } from "../http/sse.js";
import { collectJobs, combineResults, interleave, type Timings, usageOf } from "../serving/job-output.js";

/**
 * What chat and text completions share once their choices are admitted: a stream of the choices' chunks,
 * interleaved as each is ready, then the usage chunk when asked (never after a cancel: the client is gone).
 * `results` fills as choices finish; `record` runs when the stream ends for any reason.
 */
export function streamChoices<Chunk, UsageChunk>(
  jobs: readonly GenerationJob[],
  choice: (job: GenerationJob, index: number) => AsyncGenerator<Chunk, void, void>,
  results: readonly GenerationResult[],
  usageChunk: ((usage: ReturnType<typeof usageOf>) => UsageChunk) | null,
  record: () => void,
): Response {
  async function* events(): AsyncGenerator<Chunk | UsageChunk, void, void> {
    yield* interleave(jobs.map(choice));
    if (usageChunk && results.length === jobs.length && !results.some((r) => r.finishReason === "cancelled")) {
      yield usageChunk(usageOf(combineResults(results)));
    }
  }
  return sseResponse(events(), () => {
    for (const job of jobs) job.dispose();
    record();
  });
}

/** Runs every choice to its end and records the request; a cancelled one throws (499, for proxies' logs). */
export async function collectChoices(
  jobs: readonly GenerationJob[],
  timings: Timings,
  record: (results: GenerationResult[]) => void,
): Promise<Array<{ text: string; pieces: GeneratedPiece[]; result: GenerationResult }>> {
  const outputs = await collectJobs(jobs, timings);
  const results = outputs.map((o) => o.result);
  record(results);
  if (results.some((r) => r.finishReason === "cancelled")) throw apiErrors.cancelled();
  return outputs;
}
