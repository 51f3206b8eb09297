import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { readChatTemplateOption, resolveChatFormat } from "../engine/chat-prompt.js";
import { readGgufFile } from "../gguf/gguf-reader.js";
import { makeAdapter, type Adapter, type LoraModule } from "../lora/adapter.js";
import { encodeAdapterTensors, writeAdapterDir } from "../lora/adapter-io.js";
import { pathExists, readAdapterRef, storedAdapterDir } from "../lora/adapter-store.js";
import { orMasks, packMask } from "../lora/mask.js";
import { planSafetensors } from "../lora/safetensors.js";
import { newRandomSeed } from "../lora/seeded-a.js";
import { TARGET_MODULES, type TargetModule } from "../lora/target-modules.js";
import { NativeTrainerRun, type GpuMode, type TrainerEvent, type TrainMethod } from "./native-trainer.js";
import { writeTokenShards, type TokenSequence } from "./token-shards.js";
import { readTrainingFile, splitValidation, tokenizeRecords } from "./training-data.js";
import {
  baseInfo,
  maskMatrix,
  modulesAsMatrices,
  readTrainerOutput,
  SHORT_TARGET,
  topKMask,
  writeTrainerMatrices,
  type BaseInfo,
  type ModuleMatrix,
} from "./trainer-tensors.js";
import { loadPlan, planPhases, savePlan, WORK_FILES, workDirFor, type PhaseSummary, type TrainPlan } from "./train-plan.js";

/** A user-facing training failure (bad option, bad data, incompatible adapter): one line, exit 2. */
export class TrainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TrainError";
  }
}

/** The trainer stopped on SIGINT after writing its checkpoint; `--resume` continues. */
export class TrainInterrupted extends Error {
  constructor(
    readonly step: number,
    readonly workDir: string,
  ) {
    super(`training interrupted at step ${step}; checkpoint kept in ${workDir}`);
    this.name = "TrainInterrupted";
  }
}

export type TrainData =
  | { readonly file: string; readonly chatTemplate?: string }
  /** Already tokenized (tests, benchmarks): written to shards as they are. */
  | { readonly sequences: readonly TokenSequence[]; readonly validation?: readonly TokenSequence[]; readonly label: string };

export interface TrainAdapterOptions {
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
  /** Start from this adapter's B (its seed, rank, alpha, targets); entries outside the new mask keep its values. */
  readonly continueFrom?: string;
  /** Default 32. */
  readonly rank?: number;
  /** Default 2 * rank. */
  readonly alpha?: number;
  /** Default 1e-4. */
  readonly lr?: number;
  /** Learning rate of the LoRI-D calibration phase (LoRI-S often wants a higher `lr` than LoRI-D). Default `lr`. */
  readonly calibrateLr?: number;
  /** Passes over the training sequences (default 1 when `steps` is not given). */
  readonly epochs?: number;
  readonly steps?: number;
  /** Default 1. */
  readonly batch?: number;
  /** Default 1. */
  readonly gradAccum?: number;
  /** Default 512. */
  readonly maxLen?: number;
  /** Default all seven projections. */
  readonly targets?: readonly TargetModule[];
  /** A seed; default a fresh random one (recorded in the adapter). */
  readonly seed?: number;
  /** Default 0.1 (file data only). */
  readonly valFraction?: number;
  /** Validation every N steps (0: only at the end). Default 0. */
  readonly evalEvery?: number;
  readonly overwrite?: boolean;
  readonly run?: RunSettings;
}

/** Settings that may differ between a run and its resumption. */
export interface RunSettings {
  /** Default "auto". */
  readonly gpu?: GpuMode;
  /** Default: all hardware threads. */
  readonly threads?: number;
  /** Reused for tokenization; default a CPU-only binding created (and kept) by this module. */
  readonly llama?: Llama;
  readonly onProgress?: (progress: TrainProgress) => void;
  /** Forward SIGINT to the trainer (it checkpoints and stops). Default true. */
  readonly forwardSigint?: boolean;
  /** Aborting stops the trainer cleanly (as SIGINT does). */
  readonly signal?: AbortSignal;
}

export interface TrainProgress {
  readonly phase: "calibrate" | "train";
  readonly phaseIndex: number;
  readonly phaseCount: number;
  readonly totalSteps: number;
  readonly event: TrainerEvent;
}

export interface TrainResult {
  readonly dir: string;
  readonly adapter: Adapter;
  readonly plan: TrainPlan;
  readonly phases: PhaseSummary[];
  readonly adapterBytes: number;
}

let defaultLlama: Promise<Llama> | undefined;

/** Tokenizes the data, writes the work dir and trains; see docs/training.md. */
export async function trainAdapter(options: TrainAdapterOptions): Promise<TrainResult> {
  const dir = storedAdapterDir(options.adaptersDir, options.name);
  const workDir = workDirFor(options.adaptersDir, options.name);
  if (!options.overwrite && (await pathExists(dir))) {
    throw new TrainError(`adapter '${options.name}' already exists in ${options.adaptersDir} (use --overwrite to replace it)`);
  }
  if (await pathExists(join(workDir, WORK_FILES.state))) {
    if (!options.overwrite) {
      throw new TrainError(`an interrupted run of '${options.name}' exists in ${workDir}: continue it with --resume, or start over with --overwrite`);
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
  return executePlan(plan, adaptersDir, workDir, run, overwrite);
}

function positive(name: string, value: number | undefined, fallback: number, integer = true): number {
  const v = value ?? fallback;
  if (!(Number.isFinite(v) && v > 0) || (integer && !Number.isSafeInteger(v))) throw new TrainError(`${name} must be a positive ${integer ? "integer" : "number"}, got ${v}`);
  return v;
}

async function preparePlan(options: TrainAdapterOptions, workDir: string): Promise<TrainPlan> {
  const base = resolve(options.base);
  const header = await readGgufFile(base).catch((error: unknown) => {
    throw new TrainError(`cannot read base model ${options.base}: ${(error as Error).message}`);
  });
  const info = baseInfoOrThrow(header);
  const old = options.continueFrom ? (await readAdapterRef(options.continueFrom, options.adaptersDir)).adapter : undefined;
  const method = options.method ?? (old ? "lori-s" : "lori-d");
  const calibrate = options.calibrate ?? false;
  if (method === "lori-s" && !calibrate && !options.maskFrom) throw new TrainError("--method lori-s needs a mask: --mask-from ADAPTER or --calibrate");
  if (method !== "lori-s" && (calibrate || options.maskFrom)) throw new TrainError("--mask-from and --calibrate only apply to --method lori-s");
  if (calibrate && options.maskFrom) throw new TrainError("use either --mask-from or --calibrate, not both");
  if (old && method !== "lori-s") throw new TrainError("--continue-from trains under a new mask: use --method lori-s with --mask-from or --calibrate");
  const sparsity = options.sparsity ?? 0.9;
  if (!(sparsity >= 0 && sparsity < 1)) throw new TrainError(`--sparsity must be in [0, 1), got ${sparsity}`);

  let rank = positive("--rank", options.rank, 32);
  let alpha = options.alpha ?? 2 * rank;
  let seed = options.seed ?? newRandomSeed();
  let targets = options.targets ?? TARGET_MODULES;
  if (old) {
    const seeds = new Set(old.modules.map((m) => (m.a.kind === "seeded" ? m.a.seed : -1)));
    const [oldSeed] = seeds;
    if (seeds.size !== 1 || oldSeed === undefined || oldSeed < 0) throw new TrainError(`--continue-from needs a LoRI adapter with one seeded A; '${options.continueFrom}' stores A`);
    rank = old.modules[0]!.rank;
    alpha = old.modules[0]!.alpha;
    if (old.modules.some((m) => m.rank !== rank || m.alpha !== alpha)) throw new TrainError(`--continue-from needs one rank and alpha over all modules`);
    if (old.config.use_rslora) throw new TrainError("--continue-from does not support rsLoRA adapters");
    seed = oldSeed;
    targets = [...new Set(old.modules.map((m) => m.module))];
    checkCoversBase(old, info, targets, rank, `'${options.continueFrom}'`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrainError(`--seed must be an integer in [0, 2^53 - 1], got ${seed}`);
  if (!Number.isFinite(alpha)) throw new TrainError(`--alpha must be a number, got ${alpha}`);

  const { train, validation, dataInfo } = await loadSequences(options, base, seed);
  const batch = positive("--batch", options.batch, 1);
  const gradAccum = positive("--grad-accum", options.gradAccum, 1);
  if (options.steps !== undefined && options.epochs !== undefined) throw new TrainError("use either --steps or --epochs, not both");
  const epochs = options.steps === undefined ? positive("--epochs", options.epochs, 1, false) : null;
  const steps = options.steps !== undefined ? positive("--steps", options.steps, 1) : Math.max(1, Math.ceil((epochs! * train.length) / (batch * gradAccum)));

  if (train.length === 0) throw new TrainError("no training sequences left after the validation split");
  await mkdir(workDir, { recursive: true });
  await writeTokenShards(join(workDir, WORK_FILES.train), train);
  if (validation.length > 0) await writeTokenShards(join(workDir, WORK_FILES.validation), validation);

  if (options.maskFrom) {
    const { adapter: source } = await readAdapterRef(options.maskFrom, options.adaptersDir);
    checkCoversBase(source, info, targets, rank, `--mask-from '${options.maskFrom}'`);
    await writeTrainerMatrices(join(workDir, WORK_FILES.mask), info, topKMask(selectMatrices(source, info, targets), sparsity));
  }
  if (old) await writeTrainerMatrices(join(workDir, WORK_FILES.initB), info, selectMatrices(old, info, targets));

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
    lr: positive("--lr", options.lr, 1e-4, false),
    calibrateLr: positive("--calibrate-lr", options.calibrateLr ?? options.lr, 1e-4, false),
    steps,
    epochs,
    batch,
    gradAccum,
    maxLen: positive("--max-len", options.maxLen, 512),
    evalEvery: options.evalEvery ?? 0,
    calibrate,
    maskFrom: options.maskFrom ?? null,
    continueFrom: options.continueFrom ?? null,
    data: { ...dataInfo, trainSequences: train.length, validationSequences: validation.length },
    completed: {},
  };
  await savePlan(workDir, plan);
  return plan;
}

function baseInfoOrThrow(header: Parameters<typeof baseInfo>[0]): BaseInfo {
  try {
    return baseInfo(header);
  } catch (error) {
    throw new TrainError((error as Error).message);
  }
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
        throw new TrainError(`${what}: layer ${layer} ${module} is [${m.outFeatures}, ${m.rank}] x ${m.inFeatures}, training needs [${out}, ${rank}] x ${inFeatures}`);
      }
    }
  }
}

function selectMatrices(adapter: Adapter, info: BaseInfo, targets: readonly TargetModule[]): ModuleMatrix[] {
  const wanted = new Set(targets);
  return modulesAsMatrices(adapter.modules.filter((m) => wanted.has(m.module) && m.layer < info.nLayer));
}

async function loadSequences(options: TrainAdapterOptions, base: string, seed: number) {
  const data = options.data;
  if ("sequences" in data) {
    return {
      train: [...data.sequences],
      validation: [...(data.validation ?? [])],
      dataInfo: { file: data.label, sha256: null, records: data.sequences.length + (data.validation?.length ?? 0), valFraction: 0 },
    };
  }
  const file = await readTrainingFile(data.file).catch((error: unknown) => {
    throw new TrainError((error as Error).message);
  });
  const llama = await (options.run?.llama ? Promise.resolve(options.run.llama) : (defaultLlama ??= getLlama({ gpu: false, logLevel: LlamaLogLevel.error })));
  const model = await llama.loadModel({ modelPath: base, vocabOnly: true });
  try {
    const needsChat = file.records.some((r) => r.kind === "chat");
    const chatFormat = needsChat ? resolveChatFormat(model, readChatTemplateOption(data.chatTemplate)) : undefined;
    const valFraction = options.valFraction ?? 0.1;
    if (!(valFraction >= 0 && valFraction < 1)) throw new TrainError(`--val-fraction must be in [0, 1), got ${valFraction}`);
    // Split records (not sequences), so one conversation never lands on both sides.
    const split = splitValidation(file.records, valFraction, seed);
    const tokenize = (records: typeof file.records) => {
      try {
        return tokenizeRecords(records, { model, ...(chatFormat ? { chatFormat } : {}) });
      } catch (error) {
        throw new TrainError(`${file.name}: ${(error as Error).message}`);
      }
    };
    return {
      train: tokenize(split.train),
      validation: tokenize(split.validation),
      dataInfo: { file: file.name, sha256: file.sha256, records: file.records.length, valFraction },
    };
  } finally {
    await model.dispose();
  }
}

async function executePlan(plan: TrainPlan, adaptersDir: string, workDir: string, run: RunSettings, overwrite: boolean): Promise<TrainResult> {
  const dir = storedAdapterDir(adaptersDir, plan.name);
  const header = await readGgufFile(plan.base).catch((error: unknown) => {
    throw new TrainError(`cannot read base model ${plan.base}: ${(error as Error).message}`);
  });
  const info = baseInfoOrThrow(header);
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
  const trainer = await NativeTrainerRun.start(
    {
      mode: "train",
      model: plan.base,
      shards: join(workDir, WORK_FILES.train),
      output: join(workDir, WORK_FILES.output(phase)),
      steps: plan.steps,
      method,
      rank: plan.rank,
      alpha: plan.alpha,
      seed: plan.seed,
      targets: plan.targets.map((m) => SHORT_TARGET[m]),
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
      ...(run.gpu ? { gpu: run.gpu } : {}),
      ...(run.threads ? { threads: run.threads } : {}),
    },
    { forwardSigint: run.forwardSigint ?? true, ...(run.signal ? { signal: run.signal } : {}) },
  );
  let start: Extract<TrainerEvent, { event: "start" }> | undefined;
  let firstLoss: number | null = null;
  let lastStep = 0;
  let lastEval: number | null = null;
  let done: Extract<TrainerEvent, { event: "done" }> | undefined;
  let interrupted: Extract<TrainerEvent, { event: "interrupted" }> | undefined;
  try {
    for await (const event of trainer) {
      if (event.event === "start") start = event;
      if (event.event === "step") {
        firstLoss ??= event.loss;
        lastStep = event.step;
      }
      if (event.event === "eval") lastEval = event.loss;
      if (event.event === "done") done = event;
      if (event.event === "interrupted") interrupted = event;
      run.onProgress?.({ phase, ...where, totalSteps: plan.steps, event });
    }
  } catch (error) {
    throw new TrainError(`${phase}: ${(error as Error).message.split("\n")[0]}`);
  }
  const exit = await trainer.exit;
  if (exit.interrupted || interrupted) throw new TrainInterrupted(interrupted?.step ?? lastStep, workDir);
  if (!done) throw new TrainError(`${phase}: the trainer ended without a result`);
  return {
    phase,
    method,
    steps: done.steps ?? plan.steps,
    first_train_loss: resume ? null : firstLoss,
    final_train_loss: done.final_loss ?? null,
    final_val_loss: done.eval_loss ?? lastEval,
    trainable_params: done.trainable_params ?? start?.trainable_params ?? 0,
    tokens: done.tokens ?? 0,
    tokens_per_s: done.tokens_per_s ?? 0,
    peak_rss_mb: done.peak_rss_mb ?? 0,
    elapsed_s: done.elapsed_s ?? 0,
    backend: start?.backend ?? null,
    threads: start?.threads ?? null,
    resumed_from_step: resume ? (start?.start_step ?? null) : null,
  };
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
  const modules: LoraModule[] = trained.b.map((b) => {
    const [inFeatures] = info.shape(b.layer, b.module);
    const key = `${b.layer}.${b.module}`;
    const a = trained.a.get(key);
    const mask = masks?.get(key);
    return {
      layer: b.layer,
      module: b.module,
      rank: plan.rank,
      alpha: plan.alpha,
      inFeatures,
      outFeatures: b.rows,
      a: plan.method === "lora" && a ? { kind: "dense", data: a } : { kind: "seeded", seed: plan.seed },
      b: b.data,
      ...(mask ? { mask } : {}),
    };
  });
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
    first_train_loss: last.first_train_loss,
    final_train_loss: last.final_train_loss,
    final_val_loss: last.final_val_loss,
    trainable_params: last.trainable_params,
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
