import type { ExperimentConfig } from "./config.js";
import type { LoriCli } from "./lori-commands.js";
import type { WorkPaths } from "./work-dir.js";

/** One resumable unit of work: its result is stored as JSON in the work dir under `id`. */

export type ExperimentId = "base" | "sweep" | "single" | "merge" | "continual" | "interference";
export const EXPERIMENT_IDS: readonly ExperimentId[] = ["base", "sweep", "single", "merge", "continual", "interference"];

export interface StepContext {
  readonly config: ExperimentConfig;
  readonly work: WorkPaths;
  readonly lori: LoriCli;
  /** The stored result of a finished step this step depends on. */
  result<T>(id: string): T;
  /** The key of a planned step (a hash of its settings and inputs): caches inside a step are keyed by it. */
  keyOf(id: string): string;
}

export interface Step<R = unknown> {
  /** Stable, file-name safe, e.g. `single-lora-math-s1`. */
  readonly id: string;
  readonly experiment: ExperimentId;
  /** For progress lines, e.g. `single lora math seed 1`. */
  readonly label: string;
  /** Steps whose results this one needs; they run first. */
  readonly deps: readonly string[];
  /** Every setting the result depends on (besides the deps): a stored result made with other settings is redone. */
  readonly spec: unknown;
  run(ctx: StepContext): Promise<R>;
  /** A short summary of a result for the progress line, e.g. `acc 0.84`. */
  summary?(result: R): string;
}

/** Lets steps of different result types share one list. */
export function step<R>(s: Step<R>): Step {
  return s as Step;
}
