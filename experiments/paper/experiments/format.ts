import type { TaskScore } from "../results-schema.js";

/** Short result summaries for progress lines. */

export const formatAccuracy = (x: number) => x.toFixed(2);

export function formatScores(scores: readonly TaskScore[]): string {
  if (scores.length === 1) return `acc ${formatAccuracy(scores[0]!.accuracy)}`;
  return scores.map((s) => `${s.task} ${formatAccuracy(s.accuracy)}`).join(", ");
}
