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
