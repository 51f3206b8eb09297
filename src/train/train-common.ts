import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { readChatTemplateOption, resolveChatFormat } from "../engine/chat-prompt.js";
import { readGgufFile } from "../gguf/gguf-reader.js";
import {
  NativeTrainerRun,
  type FullTrainConfig,
  type GpuMode,
  type TrainConfig,
  type TrainerEvent,
  type TrainMethod,
} from "./native-trainer.js";
import { writeTokenShards, type TokenSequence } from "./token-shards.js";
import { readTrainingFile, splitValidation, tokenizeRecords } from "./training-data.js";
import type { MethodDefaults } from "./method-defaults.js";
import { baseInfo, type BaseInfo } from "./trainer-tensors.js";
import { WORK_FILES, type PhaseSummary, type PlanData, type PlanSchedule } from "./train-plan.js";

/**
 * What adapter training (train-adapter.ts) and full fine-tuning (train-full.ts) share: errors, data loading and
 * tokenization, the step schedule, token shards, and one run of the native trainer with its progress.
 */

/** A user-facing training failure (bad option, bad data, incompatible adapter): one line. */
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
  /** OS priority of the trainer process (see NativeTrainerOptions.priority). Default: inherited. */
  readonly priority?: number;
  /** Also write the checkpoint every N optimizer steps (default: only on SIGINT and at the end), for runs that may be killed. */
  readonly checkpointEvery?: number;
  /**
   * Called once before a new run trains, with the settings it took from the defaults, keyed by flag name
   * (`{ lr: 0.01, batch: 8 }`), so the CLI can say which were applied. Not called on `--resume`.
   */
  readonly onDefaults?: (method: TrainMethod | "full", applied: Readonly<Record<string, number | string>>) => void;
}

export interface TrainProgress {
  readonly phase: "calibrate" | "train";
  readonly phaseIndex: number;
  readonly phaseCount: number;
  readonly totalSteps: number;
  readonly event: TrainerEvent;
  /**
   * Mean loss per supervised token (nats/token) of a `step` (that step's batch) or an `eval` event (the validation
   * set); null for other events and for a trainer that does not report the step's supervised tokens. The events'
   * own `loss` is summed per sequence (nats/sequence), which grows with the answer length.
   */
  readonly lossPerToken: number | null;
}

/** The options of a training loop, as the API takes them (validated into a {@link PlanSchedule}). */
export interface ScheduleOptions {
  /** Default: the method's (method-defaults.ts). */
  readonly lr?: number;
  /** Passes over the training sequences (default 1 when `steps` is not given). */
  readonly epochs?: number;
  readonly steps?: number;
  /** Default: the method's (method-defaults.ts). */
  readonly batch?: number;
  /** Default 1. */
  readonly gradAccum?: number;
  /** Default 512. */
  readonly maxLen?: number;
  /** Validation every N steps (0: only at the end). Default 0. */
  readonly evalEvery?: number;
}

export function positive(name: string, value: number | undefined, fallback: number, integer = true): number {
  const v = value ?? fallback;
  if (!(Number.isFinite(v) && v > 0) || (integer && !Number.isSafeInteger(v)))
    throw new TrainError(`${name} must be a positive ${integer ? "integer" : "number"}, got ${v}`);
  return v;
}

/**
 * Validates the loop settings; epochs become steps over `trainSequences`. Settings left out take `defaults` (the
 * method's, src/train/method-defaults.ts).
 */
export function planSchedule(
  options: ScheduleOptions,
  trainSequences: number,
  defaults: Pick<MethodDefaults, "lr" | "batch">,
): PlanSchedule {
  const batch = positive("--batch", options.batch, defaults.batch);
  const gradAccum = positive("--grad-accum", options.gradAccum, 1);
  if (options.steps !== undefined && options.epochs !== undefined) throw new TrainError("use either --steps or --epochs, not both");
  const epochs = options.steps === undefined ? positive("--epochs", options.epochs, 1, false) : null;
  const steps =
    options.steps !== undefined
      ? positive("--steps", options.steps, 1)
      : Math.max(1, Math.ceil((epochs! * trainSequences) / (batch * gradAccum)));
  const evalEvery = options.evalEvery ?? 0;
  if (!Number.isSafeInteger(evalEvery) || evalEvery < 0) throw new TrainError(`--eval-every must be an integer >= 0, got ${evalEvery}`);
  return {
    lr: positive("--lr", options.lr, defaults.lr, false),
    steps,
    epochs,
    batch,
    gradAccum,
    maxLen: positive("--max-len", options.maxLen, 512),
    evalEvery,
  };
}

/** The base's absolute path and what training needs from its header (a trainable architecture). */
export async function readBase(path: string): Promise<{ base: string; info: BaseInfo }> {
  const base = resolve(path);
  const header = await readGgufFile(base).catch((error: unknown) => {
    throw new TrainError(`cannot read base model ${path}: ${(error as Error).message}`);
  });
  try {
    return { base, info: baseInfo(header) };
  } catch (error) {
    throw new TrainError((error as Error).message);
  }
}

let defaultLlama: Promise<Llama> | undefined;

export interface LoadedSequences {
  readonly train: TokenSequence[];
  readonly validation: TokenSequence[];
  readonly dataInfo: Omit<PlanData, "trainSequences" | "validationSequences">;
}

/** Reads and tokenizes the data (vocabulary only) and splits off validation records with `seed`. */
export async function loadSequences(options: {
  readonly data: TrainData;
  readonly base: string;
  readonly seed: number;
  /** Default 0.1 (file data only). */
  readonly valFraction?: number;
  readonly llama?: Llama;
}): Promise<LoadedSequences> {
  const data = options.data;
  if ("sequences" in data) {
    return {
      train: [...data.sequences],
      validation: [...(data.validation ?? [])],
      dataInfo: { file: data.label, sha256: null, records: data.sequences.length + (data.validation?.length ?? 0), valFraction: 0 },
    };
  }
  const valFraction = options.valFraction ?? 0.1;
  if (!(valFraction >= 0 && valFraction < 1)) throw new TrainError(`--val-fraction must be in [0, 1), got ${valFraction}`);
  const file = await readTrainingFile(data.file).catch((error: unknown) => {
    throw new TrainError((error as Error).message);
  });
  const llama = await (options.llama
    ? Promise.resolve(options.llama)
    : (defaultLlama ??= getLlama({ gpu: false, logLevel: LlamaLogLevel.error })));
  const model = await llama.loadModel({ modelPath: options.base, vocabOnly: true });
  try {
    const needsChat = file.records.some((r) => r.kind === "chat");
    const chatFormat = needsChat ? resolveChatFormat(model, readChatTemplateOption(data.chatTemplate)) : undefined;
    // Split records (not sequences), so one conversation never lands on both sides.
    const split = splitValidation(file.records, valFraction, options.seed);
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

/** Writes the train (and, when there is one, validation) shards into the work dir. */
export async function writeShards(workDir: string, sequences: LoadedSequences): Promise<PlanData> {
  if (sequences.train.length === 0) throw new TrainError("no training sequences left after the validation split");
  await mkdir(workDir, { recursive: true });
  await writeTokenShards(join(workDir, WORK_FILES.train), sequences.train);
  if (sequences.validation.length > 0) await writeTokenShards(join(workDir, WORK_FILES.validation), sequences.validation);
  return { ...sequences.dataInfo, trainSequences: sequences.train.length, validationSequences: sequences.validation.length };
}

export interface PhaseRun {
  readonly phase: "calibrate" | "train";
  readonly method: TrainMethod | "full";
  readonly phaseIndex: number;
  readonly phaseCount: number;
  readonly totalSteps: number;
  /** Whether `config` resumes from its checkpoint (then the first loss is not this run's first). */
  readonly resume: boolean;
  readonly workDir: string;
}

/** One trainer process to its end: progress goes to `run.onProgress`; returns the phase's summary. */
export async function runTrainerPhase(config: TrainConfig | FullTrainConfig, phase: PhaseRun, run: RunSettings): Promise<PhaseSummary> {
  const trainer = await NativeTrainerRun.start(
    {
      ...config,
      ...(run.gpu ? { gpu: run.gpu } : {}),
      ...(run.threads ? { threads: run.threads } : {}),
      ...(run.checkpointEvery ? { checkpointInterval: run.checkpointEvery } : {}),
    },
    {
      forwardSigint: run.forwardSigint ?? true,
      ...(run.signal ? { signal: run.signal } : {}),
      ...(run.priority !== undefined ? { priority: run.priority } : {}),
    },
  );
  const where = { phase: phase.phase, phaseIndex: phase.phaseIndex, phaseCount: phase.phaseCount, totalSteps: phase.totalSteps };
  // The step loss is the summed NLL divided by the sequences of the step (batch x grad-accum).
  const sequencesPerStep = (config.batch ?? 1) * (config.gradAccum ?? 1);
  let start: Extract<TrainerEvent, { event: "start" }> | undefined;
  let firstLoss: number | null = null;
  let firstLossPerToken: number | null = null;
  let lastLossPerToken: number | null = null;
  let lastStep = 0;
  let lastEval: number | null = null;
  let lastEvalPerToken: number | null = null;
  let done: Extract<TrainerEvent, { event: "done" }> | undefined;
  let interrupted: Extract<TrainerEvent, { event: "interrupted" }> | undefined;
  try {
    for await (const event of trainer) {
      let lossPerToken: number | null = null;
      if (event.event === "start") start = event;
      if (event.event === "step") {
        lossPerToken = stepLossPerToken(event, sequencesPerStep);
        if (firstLoss === null) {
          firstLoss = event.loss;
          firstLossPerToken = lossPerToken;
        }
        lastLossPerToken = lossPerToken;
        lastStep = event.step;
      }
      if (event.event === "eval") {
        lossPerToken = event.nll_per_token;
        lastEval = event.loss;
        lastEvalPerToken = event.nll_per_token;
      }
      if (event.event === "done") done = event;
      if (event.event === "interrupted") interrupted = event;
      run.onProgress?.({ ...where, event, lossPerToken });
    }
  } catch (error) {
    throw new TrainError(`${phase.phase}: ${(error as Error).message.split("\n")[0]}`);
  }
  const exit = await trainer.exit;
  if (exit.interrupted || interrupted) throw new TrainInterrupted(interrupted?.step ?? lastStep, phase.workDir);
  if (!done) throw new TrainError(`${phase.phase}: the trainer ended without a result`);
  return {
    phase: phase.phase,
    method: phase.method,
    steps: done.steps ?? phase.totalSteps,
    first_train_loss: phase.resume ? null : firstLoss,
    final_train_loss: done.final_loss ?? null,
    final_val_loss: done.eval_loss ?? lastEval,
    first_train_loss_per_token: phase.resume ? null : firstLossPerToken,
    final_train_loss_per_token: lastLossPerToken,
    final_val_loss_per_token: lastEvalPerToken,
    trainable_params: done.trainable_params ?? start?.trainable_params ?? 0,
    tokens: done.tokens ?? 0,
    tokens_per_s: done.tokens_per_s ?? 0,
    peak_rss_mb: done.peak_rss_mb ?? 0,
    elapsed_s: done.elapsed_s ?? 0,
    backend: start?.backend ?? null,
    threads: start?.threads ?? null,
    resumed_from_step: phase.resume ? (start?.start_step ?? null) : null,
  };
}

/** Nats per supervised token of one step: the step loss is the summed NLL over `sequencesPerStep` sequences. */
export function stepLossPerToken(event: { readonly loss: number; readonly targets?: number }, sequencesPerStep: number): number | null {
  if (event.targets === undefined || event.targets <= 0) return null;
  return (event.loss * sequencesPerStep) / event.targets;
}

/** The loop settings of `options` that `planSchedule` takes from the defaults, keyed by flag name. */
export function scheduleDefaultsApplied(options: ScheduleOptions, schedule: PlanSchedule): Record<string, number> {
  const applied: Record<string, number> = {};
  if (options.lr === undefined) applied.lr = schedule.lr;
  if (options.batch === undefined) applied.batch = schedule.batch;
  if (options.steps === undefined && options.epochs === undefined && schedule.epochs !== null) applied.epochs = schedule.epochs;
  return applied;
}
