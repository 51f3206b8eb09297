import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { makeAdapter, type Adapter } from "../lora/adapter.js";
import { encodeAdapterTensors, writeAdapterDir } from "../lora/adapter-io.js";
import { pathExists, readAdapterRef, storedAdapterDir } from "../lora/adapter-store.js";
import { isDoraAdapter } from "../lora/dora.js";
import { orMasks, packMask } from "../lora/mask.js";
import { planSafetensors } from "../lora/safetensors.js";
import { newRandomSeed } from "../lora/seeded-a.js";
import { TARGET_MODULES, type TargetModule } from "../lora/target-modules.js";
import { METHOD_DEFAULTS } from "./method-defaults.js";
import type { TrainMethod } from "./native-trainer.js";
import {
  loadSequences,
  planSchedule,
  positive,
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
import {
  adapterModulesOf,
  maskMatrix,
  modulesAsMatrices,
  readTrainerOutput,
  shortTarget,
  topKMask,
  writeTrainerMatrices,
  type BaseInfo,
  type ModuleMatrix,
} from "./trainer-tensors.js";
import { LOSS_UNITS, loadPlan, planPhases, savePlan, WORK_FILES, workDirFor, type PhaseSummary, type TrainPlan } from "./train-plan.js";

export { TrainError, TrainInterrupted, type RunSettings, type TrainData, type TrainProgress } from "./train-common.js";

export interface TrainAdapterOptions extends ScheduleOptions {
  readonly base: string;
  readonly data: TrainData;
  /** Adapter name: written to `<adaptersDir>/<name>`. */
  readonly name: string;
  readonly adaptersDir: string;
  /** Default "lori-d" ("lori-s" with continueFrom). */
  readonly method?: TrainMethod;
  /** LoRI-S: fraction of B entries masked out. Default 0.9. */
  readonly sparsity?: number;
  /** LoRI-S mask source: top-k |B| of this adapter (name or path). */
  readonly maskFrom?: string;
  /** LoRI-S mask source: train LoRI-D first (same seed and data), then top-k |B|. */
  readonly calibrate?: boolean;
  /**
   * Continual learning from this adapter (name or path): its rank, alpha and targets are kept and training starts
   * from its weights. lori-s/lori-d: a LoRI adapter (its seed, so its A, is kept), from its B; under lori-s the
   * entries outside the new mask keep its values. lora: a LoRA adapter, from its stored A and its B.
   */
  readonly continueFrom?: string;
  /** Default: the method's (method-defaults.ts). */
  readonly rank?: number;
  /** Default 2 * rank. */
  readonly alpha?: number;
  /** Learning rate of the LoRI-D calibration phase (LoRI-S wants a higher `lr` than LoRI-D). Default: LoRI-S's `calibrateLr` (method-defaults.ts), whatever `lr`. */
  readonly calibrateLr?: number;
  /** Default all seven projections. */
  readonly targets?: readonly TargetModule[];
  /** A seed; default a fresh random one (recorded in the adapter). */
  readonly seed?: number;
  /** Default 0.1 (file data only). */
  readonly valFraction?: number;
  readonly overwrite?: boolean;
  readonly run?: RunSettings;
}

export interface TrainResult {
  readonly dir: string;
  readonly adapter: Adapter;
  readonly plan: TrainPlan;
  readonly phases: PhaseSummary[];
  readonly adapterBytes: number;
}

/** Tokenizes the data, writes the work dir and trains; see docs/training.md. */
export async function trainAdapter(options: TrainAdapterOptions): Promise<TrainResult> {
  const dir = storedAdapterDir(options.adaptersDir, options.name);
  const workDir = workDirFor(options.adaptersDir, options.name);
  if (!options.overwrite && (await pathExists(dir))) {
    throw new TrainError(`adapter '${options.name}' already exists in ${options.adaptersDir} (use --force to replace it)`);
  }
  if (await pathExists(join(workDir, WORK_FILES.state))) {
    if (!options.overwrite) {
      throw new TrainError(
        `an interrupted run of '${options.name}' exists in ${workDir}: continue it with --resume, or start over with --force`,
      );
    }
  }
  await rm(workDir, { recursive: true, force: true });
  try {
    const plan = await preparePlan(options, workDir);
    return await executePlan(plan, options.adaptersDir, workDir, options.run ?? {}, options.overwrite ?? false);
  } catch (error) {
    if (!(error instanceof TrainInterrupted)) await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

/** Continues an interrupted run of `name` with the settings recorded in its work dir. */
export async function resumeTraining(name: string, adaptersDir: string, run: RunSettings = {}, overwrite = false): Promise<TrainResult> {
  storedAdapterDir(adaptersDir, name);
  const workDir = workDirFor(adaptersDir, name);
  const plan = await loadPlan(workDir);
  if (!plan) throw new TrainError(`nothing to resume: no interrupted run of '${name}' in ${workDir}`);
  if (plan.method === "full") throw new TrainError(`${workDir} holds a full fine-tuning run: resume it with --out ${plan.output} --resume`);
  return executePlan(plan, adaptersDir, workDir, run, overwrite);
}

async function preparePlan(options: TrainAdapterOptions, workDir: string): Promise<TrainPlan> {
  const { base, info } = await readBase(options.base);
  const old = options.continueFrom ? (await readAdapterRef(options.continueFrom, options.adaptersDir)).adapter : undefined;
  const method = options.method ?? (old ? "lori-s" : "lori-d");
  const calibrate = options.calibrate ?? false;
  if (method === "lori-s" && !calibrate && !options.maskFrom)
    throw new TrainError("--method lori-s needs a mask: --mask-from ADAPTER or --calibrate");
  if (method !== "lori-s" && (calibrate || options.maskFrom))
    throw new TrainError("--mask-from and --calibrate only apply to --method lori-s");
  if (calibrate && options.maskFrom) throw new TrainError("use either --mask-from or --calibrate, not both");
  const sparsity = options.sparsity ?? 0.9;
  if (!(sparsity >= 0 && sparsity < 1)) throw new TrainError(`--sparsity must be in [0, 1), got ${sparsity}`);

  const defaults = METHOD_DEFAULTS[method];
  let rank = positive("--rank", options.rank, defaults.rank);
  let alpha = options.alpha ?? 2 * rank;
  let seed = options.seed ?? newRandomSeed();
  let targets = options.targets ?? TARGET_MODULES;
  if (old) {
    const kept = continuedSpec(old, method, `'${options.continueFrom}'`);
    const conflict = (flag: string, given: unknown, keep: unknown) => {
      if (given !== undefined && given !== keep)
        throw new TrainError(
          `${flag} ${String(given)} conflicts with --continue-from '${options.continueFrom}' (${String(keep)}); leave it out`,
        );
    };
    conflict("--rank", options.rank, kept.rank);
    conflict("--alpha", options.alpha, kept.alpha);
    conflict("--targets", options.targets && [...options.targets].sort().join(","), [...kept.targets].sort().join(","));
    // A LoRA adapter's A is stored, so its seed only orders the data; a LoRI adapter's A is its seed.
    if (kept.seed !== null) conflict("--seed", options.seed, kept.seed);
    ({ rank, alpha, targets } = kept);
    seed = kept.seed ?? seed;
    checkCoversBase(old, info, targets, rank, `'${options.continueFrom}'`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrainError(`--seed must be an integer in [0, 2^53 - 1], got ${seed}`);
  if (!Number.isFinite(alpha)) throw new TrainError(`--alpha must be a number, got ${alpha}`);

  const sequences = await loadSequences({
    data: options.data,
    base,
    seed,
    ...defined({ valFraction: options.valFraction, llama: options.run?.llama }),
  });
  const schedule = planSchedule(options, sequences.train.length, defaults);
  const calibrateLr = positive("--calibrate-lr", options.calibrateLr ?? defaults.calibrateLr, defaults.calibrateLr, false);
  const data = await writeShards(workDir, sequences);

  if (options.maskFrom) {
    const { adapter: source } = await readAdapterRef(options.maskFrom, options.adaptersDir);
    checkCoversBase(source, info, targets, rank, `--mask-from '${options.maskFrom}'`);
    await writeTrainerMatrices(join(workDir, WORK_FILES.mask), info, topKMask(selectMatrices(source, info, targets), sparsity));
  }
  if (old) {
    const wanted = new Set(targets);
    const denseA = new Map<string, Float32Array>();
    if (method === "lora")
      for (const m of old.modules) if (m.a.kind === "dense" && wanted.has(m.module)) denseA.set(`${m.layer}.${m.module}`, m.a.data);
    await writeTrainerMatrices(join(workDir, WORK_FILES.initB), info, selectMatrices(old, info, targets), denseA);
  }

  const plan: TrainPlan = {
    version: 1,
    name: options.name,
    base,
    method,
    sparsity: method === "lori-s" ? sparsity : null,
    rank,
    alpha,
    seed,
    targets,
    ...schedule,
    calibrateLr,
    calibrate,
    maskFrom: options.maskFrom ?? null,
    continueFrom: options.continueFrom ?? null,
    data,
    completed: {},
  };
  await savePlan(workDir, plan);
  options.run?.onDefaults?.(method, {
    ...(options.method === undefined ? { method } : {}),
    ...(options.rank === undefined && !old ? { rank } : {}),
    ...(options.alpha === undefined && !old ? { alpha } : {}),
    ...scheduleDefaultsApplied(options, schedule),
    ...(calibrate && options.calibrateLr === undefined ? { "calibrate-lr": calibrateLr } : {}),
    ...(method === "lori-s" && options.sparsity === undefined ? { sparsity } : {}),
    ...(options.seed === undefined && !old?.modules.some((m) => m.a.kind === "seeded") ? { seed } : {}),
  });
  return plan;
}

/**
 * What a continued run keeps of the old adapter: rank, alpha and targets, and for LoRI methods the seed (its A).
 * LoRA continues from the stored A, so it needs one; LoRI needs a single seeded A it can regenerate.
 */
function continuedSpec(
  old: Adapter,
  method: TrainMethod,
  what: string,
): { rank: number; alpha: number; targets: TargetModule[]; seed: number | null } {
  if (method === "dora" || isDoraAdapter(old))
    throw new TrainError(`--continue-from is not supported for DoRA (--method ${method}, ${what}${isDoraAdapter(old) ? " is DoRA" : ""})`);
  const rank = old.modules[0]!.rank;
  const alpha = old.modules[0]!.alpha;
  if (old.modules.some((m) => m.rank !== rank || m.alpha !== alpha))
    throw new TrainError(`--continue-from needs one rank and alpha over all modules`);
  if (old.config.use_rslora) throw new TrainError("--continue-from does not support rsLoRA adapters");
  const targets = [...new Set(old.modules.map((m) => m.module))];
  if (method === "lora") {
    if (!old.modules.every((m) => m.a.kind === "dense"))
      throw new TrainError(
        `--method lora --continue-from needs a LoRA adapter with a stored A; ${what} has a seeded A (use --method lori-d or lori-s)`,
      );
    return { rank, alpha, targets, seed: null };
  }
  const seeds = new Set(old.modules.map((m) => (m.a.kind === "seeded" ? m.a.seed : -1)));
  const [seed] = seeds;
  if (seeds.size !== 1 || seed === undefined || seed < 0)
    throw new TrainError(`--method ${method} --continue-from needs a LoRI adapter with one seeded A; ${what} stores A (use --method lora)`);
  return { rank, alpha, targets, seed };
}

/** The adapter must have every (layer, target) of the base at `rank` with the base's output size. */
function checkCoversBase(adapter: Adapter, info: BaseInfo, targets: readonly TargetModule[], rank: number, what: string): void {
  const byKey = new Map(adapter.modules.map((m) => [`${m.layer}.${m.module}`, m]));
  for (let layer = 0; layer < info.nLayer; layer++) {
    for (const module of targets) {
      const m = byKey.get(`${layer}.${module}`);
      const [inFeatures, out] = info.shape(layer, module);
      if (!m) throw new TrainError(`${what} has no ${module} in layer ${layer}`);
      if (m.rank !== rank || m.outFeatures !== out || m.inFeatures !== inFeatures) {
        throw new TrainError(
          `${what}: layer ${layer} ${module} is [${m.outFeatures}, ${m.rank}] x ${m.inFeatures}, training needs [${out}, ${rank}] x ${inFeatures}`,
        );
      }
    }
  }
}

function selectMatrices(adapter: Adapter, info: BaseInfo, targets: readonly TargetModule[]): ModuleMatrix[] {
  const wanted = new Set(targets);
  return modulesAsMatrices(adapter.modules.filter((m) => wanted.has(m.module) && m.layer < info.nLayer));
}

async function executePlan(
  plan: TrainPlan,
  adaptersDir: string,
  workDir: string,
  run: RunSettings,
  overwrite: boolean,
): Promise<TrainResult> {
  const dir = storedAdapterDir(adaptersDir, plan.name);
  const { info } = await readBase(plan.base);
  const phases = planPhases(plan);
  const completed: Record<string, PhaseSummary> = { ...plan.completed };
  for (const [phaseIndex, phase] of phases.entries()) {
    if (completed[phase]) continue;
    const method: TrainMethod = phase === "calibrate" ? "lori-d" : plan.method;
    const summary = await runPhase(plan, workDir, phase, method, { phaseIndex, phaseCount: phases.length }, run);
    completed[phase] = summary;
    if (phase === "calibrate") {
      const trained = await readTrainerOutput(join(workDir, WORK_FILES.output(phase)), info, plan.targets, plan.rank);
      await writeTrainerMatrices(join(workDir, WORK_FILES.mask), info, topKMask(trained.b, plan.sparsity ?? 0.9));
    }
    await savePlan(workDir, { ...plan, completed });
  }
  const phaseSummaries = phases.map((p) => completed[p]!);
  const { adapter, adapterBytes } = await buildAdapter(plan, adaptersDir, workDir, info, phaseSummaries);
  await writeAdapterDir(dir, adapter, { overwrite });
  await rm(workDir, { recursive: true, force: true });
  await rm(join(adaptersDir, ".train"), { recursive: false }).catch(() => undefined);
  return { dir, adapter, plan: { ...plan, completed }, phases: phaseSummaries, adapterBytes };
}

async function runPhase(
  plan: TrainPlan,
  workDir: string,
  phase: "calibrate" | "train",
  method: TrainMethod,
  where: { phaseIndex: number; phaseCount: number },
  run: RunSettings,
): Promise<PhaseSummary> {
  const checkpoint = join(workDir, WORK_FILES.checkpoint(phase));
  const validation = join(workDir, WORK_FILES.validation);
  const resume = existsSync(checkpoint);
  const config = {
    mode: "train",
    model: plan.base,
    shards: join(workDir, WORK_FILES.train),
    output: join(workDir, WORK_FILES.output(phase)),
    steps: plan.steps,
    method,
    rank: plan.rank,
    alpha: plan.alpha,
    seed: plan.seed,
    targets: plan.targets.map(shortTarget),
    lr: phase === "calibrate" ? plan.calibrateLr : plan.lr,
    batch: plan.batch,
    gradAccum: plan.gradAccum,
    maxLen: plan.maxLen,
    evalInterval: plan.evalEvery,
    checkpoint,
    resume,
    ...(existsSync(validation) ? { evalShards: validation } : {}),
    ...(method === "lori-s" ? { mask: join(workDir, WORK_FILES.mask) } : {}),
    ...(phase === "train" && plan.continueFrom ? { initB: join(workDir, WORK_FILES.initB) } : {}),
  } as const;
  return runTrainerPhase(config, { phase, method, ...where, totalSteps: plan.steps, resume, workDir }, run);
}

async function buildAdapter(
  plan: TrainPlan,
  adaptersDir: string,
  workDir: string,
  info: BaseInfo,
  phases: PhaseSummary[],
): Promise<{ adapter: Adapter; adapterBytes: number }> {
  const trained = await readTrainerOutput(join(workDir, WORK_FILES.output("train")), info, plan.targets, plan.rank);
  let masks: Map<string, Uint8Array> | undefined;
  let old: Adapter | undefined;
  if (plan.continueFrom) old = (await readAdapterRef(plan.continueFrom, adaptersDir)).adapter;
  if (plan.method === "lori-s") {
    const mask = await readTrainerOutput(join(workDir, WORK_FILES.mask), info, plan.targets, plan.rank);
    masks = new Map(mask.b.map((m) => [`${m.layer}.${m.module}`, packMask(m.data)]));
    if (old) {
      // The old values stay outside the new mask: the result is sparse only where the old adapter was.
      const oldByKey = new Map(old.modules.map((m) => [`${m.layer}.${m.module}`, m]));
      if (old.modules.every((m) => m.mask)) {
        for (const [key, bits] of masks) masks.set(key, orMasks([bits, packMask(maskMatrix(oldByKey.get(key)!).data)]));
      } else {
        masks = undefined;
      }
    }
  }
  const modules = adapterModulesOf(trained, info, { method: plan.method, rank: plan.rank, alpha: plan.alpha, seed: plan.seed, masks });
  const { tensors, metadata } = encodeAdapterTensors(modules, "F32");
  const adapterBytes = planSafetensors(tensors, metadata).fileBytes;
  const last = phases.at(-1)!;
  const lineageEntry = {
    op: "train",
    method: plan.method,
    data: { file: plan.data.file, sha256: plan.data.sha256, records: plan.data.records },
    base: basename(plan.base),
    seed: plan.seed,
    ...(plan.calibrate ? { mask: "calibrated" } : {}),
    ...(plan.maskFrom ? { mask_from: plan.maskFrom } : {}),
    ...(plan.continueFrom ? { continue_from: plan.continueFrom } : {}),
  };
  const training = {
    steps: last.steps,
    epochs: plan.epochs,
    lr: plan.lr,
    ...(plan.calibrate ? { calibrate_lr: plan.calibrateLr } : {}),
    batch: plan.batch,
    grad_accum: plan.gradAccum,
    max_len: plan.maxLen,
    train_sequences: plan.data.trainSequences,
    validation_sequences: plan.data.validationSequences,
    loss_units: LOSS_UNITS,
    first_train_loss: last.first_train_loss,
    final_train_loss: last.final_train_loss,
    final_val_loss: last.final_val_loss,
    first_train_loss_per_token: last.first_train_loss_per_token,
    final_train_loss_per_token: last.final_train_loss_per_token,
    final_val_loss_per_token: last.final_val_loss_per_token,
    trainable_params: last.trainable_params,
    // The last (train) phase's rate; each phase's own rate and time are in `phases`.
    tokens_per_s: last.tokens_per_s,
    peak_rss_mb: Math.max(...phases.map((p) => p.peak_rss_mb)),
    adapter_bytes: adapterBytes,
    elapsed_s: phases.reduce((s, p) => s + p.elapsed_s, 0),
    backend: last.backend,
    threads: last.threads,
    phases,
  };
  const adapter = makeAdapter(modules, {
    variant: plan.method === "lori-s" && !masks ? "lori-d" : plan.method,
    baseModel: basename(plan.base),
    baseFingerprint: info.fingerprint,
    lineage: [...(old?.config.lori?.lineage ?? []), lineageEntry],
    training,
  });
  return { adapter, adapterBytes };
}

function defined<T extends Record<string, unknown>>(obj: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(obj).filter(([, x]) => x !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
