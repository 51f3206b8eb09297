import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TrainMethod } from "./native-trainer.js";
import type { TargetModule } from "../lora/target-modules.js";

/** What the data of a run was, for the plan and the result's provenance. */
export interface PlanData {
  readonly file: string;
  readonly sha256: string | null;
  readonly records: number;
  readonly trainSequences: number;
  readonly validationSequences: number;
  readonly valFraction: number;
}

/** The training loop's settings, common to adapter and full training. */
export interface PlanSchedule {
  readonly lr: number;
  /** Optimizer steps per phase. */
  readonly steps: number;
  readonly epochs: number | null;
  readonly batch: number;
  readonly gradAccum: number;
  readonly maxLen: number;
  readonly evalEvery: number;
}

/**
 * Everything an adapter training run needs after its data is tokenized, saved as `state.json` in the run's work
 * dir (`<adapters-dir>/.train/<name>/`) so `--resume` continues with exactly the same settings.
 */
export interface TrainPlan extends PlanSchedule {
  readonly version: 1;
  readonly name: string;
  /** Absolute path of the base GGUF. */
  readonly base: string;
  readonly method: TrainMethod;
  /** LoRI-S only. */
  readonly sparsity: number | null;
  readonly rank: number;
  readonly alpha: number;
  readonly seed: number;
  readonly targets: readonly TargetModule[];
  /** Learning rate of the calibration (LoRI-D) phase. */
  readonly calibrateLr: number;
  readonly calibrate: boolean;
  readonly maskFrom: string | null;
  readonly continueFrom: string | null;
  readonly data: PlanData;
  /** Present once the run is done with a phase: its summary (from the trainer's `done` event). */
  readonly completed: Record<string, PhaseSummary>;
}

/** A full fine-tuning run (`<out>.train/state.json`): every weight trains, the result is a GGUF model. */
export interface FullTrainPlan extends PlanSchedule {
  readonly version: 1;
  readonly method: "full";
  /** Absolute paths. */
  readonly base: string;
  readonly output: string;
  /** Seed of the validation split and the data order. */
  readonly seed: number;
  readonly data: PlanData;
  readonly completed: Record<string, PhaseSummary>;
}

export type AnyTrainPlan = TrainPlan | FullTrainPlan;

/**
 * One trainer run's result. Losses: `*_loss` are summed per sequence (nats/sequence: the trainer's objective, kept
 * for compatibility), `*_loss_per_token` are means per supervised token (nats/token: comparable across data sets).
 * The train losses are the first and last step's batch; the validation loss is over the whole validation set.
 */
export interface PhaseSummary {
  readonly phase: "calibrate" | "train";
  readonly method: TrainMethod | "full";
  readonly steps: number;
  readonly first_train_loss: number | null;
  readonly final_train_loss: number | null;
  readonly final_val_loss: number | null;
  readonly first_train_loss_per_token: number | null;
  readonly final_train_loss_per_token: number | null;
  readonly final_val_loss_per_token: number | null;
  readonly trainable_params: number;
  readonly tokens: number;
  readonly tokens_per_s: number;
  readonly peak_rss_mb: number;
  readonly elapsed_s: number;
  readonly backend: string | null;
  readonly threads: number | null;
  readonly resumed_from_step: number | null;
}

/** How the training summary labels its losses (stored in the adapter, printed by `train --json`). */
export const LOSS_UNITS = {
  loss: "nats per sequence: the summed NLL of a sequence's supervised tokens, averaged over sequences",
  loss_per_token: "nats per supervised token",
} as const;

export const WORK_FILES = {
  state: "state.json",
  train: "train.tokens",
  validation: "validation.tokens",
  mask: "mask.safetensors",
  initB: "init-b.safetensors",
  output: (phase: string) => `${phase}.safetensors`,
  /** Full training: the model the trainer writes before it is renamed onto `--out`. */
  model: "model.gguf",
  checkpoint: (phase: string) => `${phase}.checkpoint.safetensors`,
} as const;

/** `<adaptersDir>/.train/<name>`: hidden from the adapter registry (names never start with a dot). */
export function workDirFor(adaptersDir: string, name: string): string {
  return join(adaptersDir, ".train", name);
}

/** `<out>.train`, beside the output, so the final rename stays on one filesystem (and is atomic). */
export function fullWorkDirFor(out: string): string {
  return `${out}.train`;
}

export async function savePlan(workDir: string, plan: AnyTrainPlan): Promise<void> {
  await mkdir(workDir, { recursive: true });
  const temp = join(workDir, `${WORK_FILES.state}.tmp`);
  await writeFile(temp, `${JSON.stringify(plan, null, 2)}\n`);
  await rename(temp, join(workDir, WORK_FILES.state));
}

export async function loadPlan(workDir: string): Promise<AnyTrainPlan | null> {
  let text: string;
  try {
    text = await readFile(join(workDir, WORK_FILES.state), "utf8");
  } catch {
    return null;
  }
  const plan = JSON.parse(text) as AnyTrainPlan;
  if (plan.version !== 1) throw new Error(`${workDir}: unsupported training state version ${String(plan.version)}`);
  return plan;
}

/** The phases of a plan, in order: LoRI-S with `calibrate` trains LoRI-D first. */
export function planPhases(plan: Pick<TrainPlan, "calibrate" | "method">): ("calibrate" | "train")[] {
  return plan.calibrate ? ["calibrate", "train"] : ["train"];
}
