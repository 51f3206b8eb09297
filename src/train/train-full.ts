import { existsSync } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathExists } from "../lora/adapter-store.js";
import { newRandomSeed } from "../lora/seeded-a.js";
import { METHOD_DEFAULTS } from "./method-defaults.js";
import type { FullTrainConfig } from "./native-trainer.js";
import {
  loadSequences,
  planSchedule,
  readBase,
  runTrainerPhase,
  scheduleDefaultsApplied,
  TrainError,
  TrainInterrupted,
  writeShards,
  type RunSettings,
  type ScheduleOptions,
  type TrainData,
} from "./train-common.js";
import { fullWorkDirFor, loadPlan, savePlan, WORK_FILES, type FullTrainPlan, type PhaseSummary } from "./train-plan.js";

/**
 * Full fine-tuning: every weight of the base trains and the result is a new GGUF model at `out`. Work files go to
 * `<out>.train/`; the trainer writes the model there and it is renamed onto `out` only when training succeeded, so
 * `out` is never a half-written file.
 */

export interface TrainFullOptions extends ScheduleOptions {
  readonly base: string;
  readonly data: TrainData;
  /** The trained model: a path ending in .gguf. */
  readonly out: string;
  /** Seed of the validation split and the data order; default a fresh random one. */
  readonly seed?: number;
  /** Default 0.1 (file data only). */
  readonly valFraction?: number;
  /** Replace an existing `out` (and a stale interrupted run). */
  readonly overwrite?: boolean;
  readonly run?: RunSettings;
}

export interface TrainFullResult {
  readonly path: string;
  readonly plan: FullTrainPlan;
  readonly phase: PhaseSummary;
  readonly modelBytes: number;
}

/** Tokenizes the data, writes `<out>.train/` and trains every weight; see docs/training.md. */
export async function trainFull(options: TrainFullOptions): Promise<TrainFullResult> {
  const out = checkOutPath(options.out);
  const workDir = fullWorkDirFor(out);
  await refuseExisting(out, options.overwrite ?? false);
  if (await pathExists(join(workDir, WORK_FILES.state))) {
    if (!options.overwrite)
      throw new TrainError(
        `an interrupted run for ${options.out} exists in ${workDir}: continue it with --resume, or start over with --force`,
      );
  }
  await rm(workDir, { recursive: true, force: true });
  try {
    const plan = await prepareFullPlan(options, out, workDir);
    return await executeFullPlan(plan, workDir, options.run ?? {}, options.overwrite ?? false);
  } catch (error) {
    if (!(error instanceof TrainInterrupted)) await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

/** Continues an interrupted full fine-tuning run for `out` with the settings recorded in `<out>.train/`. */
export async function resumeFullTraining(out: string, run: RunSettings = {}, overwrite = false): Promise<TrainFullResult> {
  const path = checkOutPath(out);
  const workDir = fullWorkDirFor(path);
  const plan = await loadPlan(workDir);
  if (!plan) throw new TrainError(`nothing to resume: no interrupted run for ${out} in ${workDir}`);
  if (plan.method !== "full") throw new TrainError(`${workDir} holds an adapter training run, not a full fine-tuning run`);
  await refuseExisting(path, overwrite);
  return executeFullPlan(plan, workDir, run, overwrite);
}

function checkOutPath(out: string): string {
  if (!out.toLowerCase().endsWith(".gguf")) throw new TrainError(`--method full writes a model: --out must be a .gguf path, got '${out}'`);
  return resolve(out);
}

async function refuseExisting(out: string, overwrite: boolean): Promise<void> {
  if (!overwrite && (await pathExists(out))) throw new TrainError(`${out} already exists (use --force to replace it)`);
}

async function prepareFullPlan(options: TrainFullOptions, out: string, workDir: string): Promise<FullTrainPlan> {
  const { base } = await readBase(options.base);
  // Resuming reads the base again; replacing it with its own fine-tune would change what a resumed run starts from.
  if (base === out) throw new TrainError("--out must differ from --base");
  const seed = options.seed ?? newRandomSeed();
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrainError(`--seed must be an integer in [0, 2^53 - 1], got ${seed}`);
  const sequences = await loadSequences({
    data: options.data,
    base,
    seed,
    ...(options.valFraction !== undefined ? { valFraction: options.valFraction } : {}),
    ...(options.run?.llama ? { llama: options.run.llama } : {}),
  });
  const schedule = planSchedule(options, sequences.train.length, METHOD_DEFAULTS.full);
  const data = await writeShards(workDir, sequences);
  const plan: FullTrainPlan = { version: 1, method: "full", base, output: out, seed, ...schedule, data, completed: {} };
  await savePlan(workDir, plan);
  options.run?.onDefaults?.("full", { ...scheduleDefaultsApplied(options, schedule), ...(options.seed === undefined ? { seed } : {}) });
  return plan;
}

async function executeFullPlan(plan: FullTrainPlan, workDir: string, run: RunSettings, overwrite: boolean): Promise<TrainFullResult> {
  const model = join(workDir, WORK_FILES.model);
  let phase = plan.completed.train;
  if (!phase) {
    const checkpoint = join(workDir, WORK_FILES.checkpoint("train"));
    const validation = join(workDir, WORK_FILES.validation);
    const resume = existsSync(checkpoint);
    const config: FullTrainConfig = {
      mode: "train",
      method: "full",
      model: plan.base,
      output: model,
      shards: join(workDir, WORK_FILES.train),
      steps: plan.steps,
      batch: plan.batch,
      gradAccum: plan.gradAccum,
      maxLen: plan.maxLen,
      lr: plan.lr,
      dataSeed: plan.seed,
      evalInterval: plan.evalEvery,
      checkpoint,
      resume,
      ...(existsSync(validation) ? { evalShards: validation } : {}),
    };
    phase = await runTrainerPhase(
      config,
      { phase: "train", method: "full", phaseIndex: 0, phaseCount: 1, totalSteps: plan.steps, resume, workDir },
      run,
    );
    // Recorded so a failure between here and the rename does not retrain: the model is already in the work dir.
    await savePlan(workDir, { ...plan, completed: { train: phase } });
  }
  if (!existsSync(model)) throw new TrainError(`the trainer reported success but wrote no model (${model})`);
  await refuseExisting(plan.output, overwrite);
  const modelBytes = (await stat(model)).size;
  await rename(model, plan.output);
  await rm(workDir, { recursive: true, force: true });
  return { path: plan.output, plan: { ...plan, completed: { train: phase } }, phase, modelBytes };
}
