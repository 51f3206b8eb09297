import type { TaskId } from "../../src/tasks/task.js";

/**
 * What `npm run paper` measures, in one JSON document (docs/results.json); docs/results.md is rendered from it.
 * Accuracies are fractions in [0, 1]; every run names its seed.
 */

/** Training methods of the single-task table; "full" is full fine-tuning (a new model, not an adapter). */
export type MethodId = "full" | "lora" | "lori-d" | "lori-s";
export type AdapterMethodId = Exclude<MethodId, "full">;
/**
 * "cat" and "linear" at the paper's merge weights (`PaperConfig.mergeWeights`); "stack" is `cat` at weight 1 for
 * every adapter: exactly what serving the four adapters stacked computes, i.e. merging without down-weighting.
 */
export type MergeMethodId = "cat" | "linear" | "stack";
export type CapabilityTaskId = Exclude<TaskId, "safety">;

export interface TaskScore {
  readonly task: TaskId;
  /** Fraction correct over the task's test examples (safety: refusals of harmful + answers to benign). */
  readonly accuracy: number;
  readonly examples: number;
  /** Per-group rates, e.g. safety `{ harmful: 0.95, benign: 0.80 }` (harmful = refusal rate). */
  readonly groups?: Readonly<Record<string, number>>;
}

export interface SingleTaskRun {
  readonly method: MethodId;
  readonly task: TaskId;
  readonly seed: number;
  readonly score: TaskScore;
  /** Parameters the optimizer could change (LoRI-S: unmasked B entries; full: every weight). */
  readonly trainableParams: number;
  /** Bytes of the stored adapter (or model, for full) on disk. */
  readonly bytes: number;
  readonly trainSeconds: number;
  readonly finalLoss: number;
}

export interface MergeRun {
  readonly method: AdapterMethodId;
  readonly merge: MergeMethodId;
  readonly seed: number;
  /** Merge weight of each task's adapter. */
  readonly weights: Readonly<Record<TaskId, number>>;
  /** One score per task, of the merged adapter. */
  readonly scores: readonly TaskScore[];
}

export interface ContinualRun {
  readonly method: AdapterMethodId;
  readonly seed: number;
  /** The task trained second, continuing from the safety adapter. */
  readonly task: CapabilityTaskId;
  /** Harmful-request refusal rate of the safety adapter before, and of the continued adapter after. */
  readonly safetyBefore: number;
  readonly safetyAfter: number;
  /** Accuracy of the continued adapter on `task`. */
  readonly taskAccuracy: number;
}

export interface InterferenceRow {
  readonly method: AdapterMethodId;
  readonly seed: number;
  readonly pair: readonly [TaskId, TaskId];
  /** B mask overlap (Jaccard); null for dense adapters. */
  readonly maskJaccard: number | null;
  /** Mean principal angle between the A subspaces, degrees (90 = orthogonal). */
  readonly meanAngleDeg: number;
  /** ||cross terms of a linear merge|| / ||exact sum||, at the merge weights. */
  readonly crossTermRatio: number;
}

export interface PaperConfig {
  /** The base model file and its parameter count. */
  readonly base: string;
  readonly baseParams: number;
  readonly seeds: readonly number[];
  /** Seeds of the continual-learning runs, when fewer than `seeds`. */
  readonly continualSeeds?: readonly number[];
  readonly trainSize: number;
  readonly testSize: Readonly<Record<TaskId, number>>;
  /** Optimizer steps per method (single-task runs). */
  readonly steps: Readonly<Record<MethodId, number>>;
  readonly learningRates: Readonly<Record<MethodId, number>>;
  readonly rank: number;
  readonly sparsity: number;
  /** Weight of each of the four adapters in a merge, per adapter method (the paper: LoRI-D 0.4, LoRI-S 0.3). */
  readonly mergeWeights: Readonly<Record<AdapterMethodId, number>>;
  /** True for the CI smoke run (tiny shapes, a few steps): its numbers mean nothing. */
  readonly smoke: boolean;
}

export interface PaperResults {
  /** ISO time the results were completed. */
  readonly generatedAt: string;
  readonly config: PaperConfig;
  /** Wall time of all runs, summed over resumed invocations. */
  readonly runtimeSeconds: number;
  /** The base model without adapters, per task. */
  readonly baseScores: readonly TaskScore[];
  readonly single: readonly SingleTaskRun[];
  readonly merges: readonly MergeRun[];
  readonly continual: readonly ContinualRun[];
  readonly interference: readonly InterferenceRow[];
}
