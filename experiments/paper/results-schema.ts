import type { TaskId } from "../../src/tasks/task.js";

/**
 * What `npm run paper` measures, in one JSON document (docs/results.json); docs/results.md is rendered from it.
 * Accuracies are fractions in [0, 1]; every run names its seed.
 */

/**
 * Training methods of the single-task table. "full" is full fine-tuning (a new model, not an adapter); "dora" trains
 * an adapter that no GGUF LoRA can express, so it is scored as a merged model (`export --format merged-gguf`).
 */
export type MethodId = "full" | "lora" | "dora" | "lori-d" | "lori-s";
/** Methods scored as a model of their own rather than as an adapter on the base. */
export type ModelMethodId = "full" | "dora";
/** Methods whose adapters are served, merged, continued and compared. */
export type AdapterMethodId = Exclude<MethodId, ModelMethodId>;
/**
 * The merge methods the paper run uses, in table order: the ONE list to extend. "cat" and "linear" at the paper's
 * merge weights (`PaperConfig.mergeWeights`); "stack" is `cat` at weight 1 for every adapter: exactly what serving
 * the four adapters stacked computes, i.e. merging without down-weighting.
 *
 * TO EXTEND (issue 16 item 5): once `lori-server merge --method` has them, add "ties", "dare_linear", "dare_ties",
 * "magnitude_prune" and "svd" here, their labels in report/summary.ts MERGE_LABELS and their extra flags
 * (--density, --seed) in lori-commands.ts MERGE_FLAGS. Every merge step, table row and verdict follows this list.
 */
export const PAPER_MERGE_METHODS = ["cat", "linear", "stack", "ties", "dare_linear", "dare_ties", "magnitude_prune", "svd"] as const;
export type MergeMethodId = (typeof PAPER_MERGE_METHODS)[number];
/** The seed's merge baselines (PEFT's add_weighted_adapter methods beyond linear): see ExperimentConfig.baselineMergeMethods. */
export const BASELINE_MERGES: readonly MergeMethodId[] = ["ties", "dare_linear", "dare_ties", "magnitude_prune", "svd"];

/**
 * How the A of each task's adapter is seeded: "per-task", a seed per task (seed*100 + task index, our original
 * runs); "shared", one A for every task of a seed (seed*100 + 50), as the reference code probably does.
 */
export type ASharing = "per-task" | "shared";
export const A_SHARINGS: readonly ASharing[] = ["per-task", "shared"];

/** Which LoRI-D adapter gave a continued LoRI-S run its mask. */
export type MaskPairing =
  /** Trained on the task under the safety adapter's A (the adapter being continued): the fix. */
  | "same-A"
  /** The task's single-task LoRI-D, trained under the task's own A (the old, buggy pairing): reported once. */
  | "task-A";
export type CapabilityTaskId = Exclude<TaskId, "safety">;

export interface TaskScore {
  readonly task: TaskId;
  /** Fraction correct over the task's test examples (safety: refusals of harmful + answers to benign). */
  readonly accuracy: number;
  readonly examples: number;
  /** Per-group rates, e.g. safety `{ harmful: 0.95, benign: 0.80 }` (harmful = refusal rate). */
  readonly groups?: Readonly<Record<string, number>>;
  /**
   * Per test example, in test-split order: "1" correct, "0" wrong (the bootstrap's input). The examples are the
   * same for every run of a task (PaperResults.testGroups names their groups).
   */
  readonly outcomes?: string;
}

/** One point of a training log (every `logEvery` steps and at the end). */
export interface TrainLogPoint {
  readonly step: number;
  /** Mean loss per supervised token on the task's dev split, nats. */
  readonly devLoss: number;
  /** ||B||_F over every target of the adapter (absent for full fine-tuning, or from a trainer without it). */
  readonly bNorm?: number;
  /** max |B| over every target. */
  readonly bMaxAbs?: number;
  /** LoRA only: ||A − A0||_F / ||A0||_F, A0 the A the run started from. */
  readonly aDrift?: number;
}

/** One training of the learning-rate sweep, scored on the dev split. */
export interface SweepPoint {
  readonly method: MethodId;
  readonly task: TaskId;
  readonly lr: number;
  readonly devAccuracy: number;
  /** Final dev loss per token; null when the trainer reported none. */
  readonly devLoss: number | null;
  readonly finalLoss: number;
  readonly log: readonly TrainLogPoint[];
  /** The trainer's seconds per optimizer step (for wall-time estimates); null when unknown. */
  readonly secondsPerStep: number | null;
}

/** The learning-rate sweep of one method: every point, and the dev-best learning rate later runs use. */
export interface SweepResult {
  readonly method: MethodId;
  readonly seed: number;
  readonly tasks: readonly TaskId[];
  /** Every learning rate tried, ascending (the initial grid plus any extension). */
  readonly grid: readonly number[];
  readonly points: readonly SweepPoint[];
  /** Highest mean dev accuracy over the sweep's tasks; ties: lowest mean dev loss, then the smaller lr. */
  readonly bestLr: number;
  /** How many times the grid grew because the best value sat at its edge. */
  readonly extensions: number;
  /** True when the best value is still at an edge after the allowed extensions. */
  readonly atEdge: boolean;
}

export interface SingleTaskRun {
  readonly method: MethodId;
  readonly task: TaskId;
  readonly seed: number;
  readonly aSharing: ASharing;
  /** The learning rate used: the method's dev-best from the sweep. */
  readonly lr: number;
  /** Dev loss every `logEvery` steps. */
  readonly log: readonly TrainLogPoint[];
  readonly score: TaskScore;
  /** Parameters the optimizer could change (LoRI-S: unmasked B entries; full: every weight). */
  readonly trainableParams: number;
  /** Bytes of the stored adapter (or model, for full) on disk. */
  readonly bytes: number;
  readonly trainSeconds: number;
  /** Wall seconds of the test eval (for wall-time estimates); absent in older results. */
  readonly evalSeconds?: number;
  readonly finalLoss: number;
}

export interface MergeRun {
  readonly method: AdapterMethodId;
  readonly merge: MergeMethodId;
  readonly seed: number;
  readonly aSharing: ASharing;
  /** Merge weight of each task's adapter. */
  readonly weights: Readonly<Record<TaskId, number>>;
  /** One score per task, of the merged adapter. */
  readonly scores: readonly TaskScore[];
}

export interface ContinualRun {
  readonly method: AdapterMethodId;
  readonly seed: number;
  readonly aSharing: ASharing;
  /** LoRI-S: where the mask came from; null for methods without a mask. */
  readonly maskPairing: MaskPairing | null;
  /** The task trained second, continuing from the safety adapter. */
  readonly task: CapabilityTaskId;
  /** Harmful-request refusal rate of the safety adapter before, and of the continued adapter after. */
  readonly safetyBefore: number;
  readonly safetyAfter: number;
  /** Accuracy of the continued adapter on `task`. */
  readonly taskAccuracy: number;
  /** The continued adapter's full scores (with outcomes): on `task`, and on safety. */
  readonly taskScore?: TaskScore;
  readonly safetyScore?: TaskScore;
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

/** Wall time per optimizer step, measured from the runs (for the wall-time estimate of a bigger config). */
export interface StepTiming {
  readonly method: MethodId;
  readonly steps: number;
  readonly seconds: number;
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
  /** The learning rate every run of a method used after the sweep: its dev-best (absent: not swept yet). */
  readonly learningRates: Readonly<Partial<Record<MethodId, number>>>;
  /** The initial learning-rate grid of the sweep, per method. */
  readonly lrGrid: Readonly<Record<MethodId, readonly number[]>>;
  readonly sweepTasks: readonly TaskId[];
  readonly devSize: Readonly<Record<TaskId, number>>;
  /** Dev loss is logged every this many steps. */
  readonly logEvery: number;
  readonly aSharings: readonly ASharing[];
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
  /** Group of each test example per task that has groups (safety: "harmful" / "benign"), in test order. */
  readonly testGroups: Partial<Record<TaskId, readonly string[]>>;
  readonly sweeps: readonly SweepResult[];
  readonly single: readonly SingleTaskRun[];
  readonly merges: readonly MergeRun[];
  readonly continual: readonly ContinualRun[];
  readonly interference: readonly InterferenceRow[];
}
