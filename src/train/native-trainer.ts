import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { findPackageRoot } from "../util/package-root.js";

/** Exit codes of native/build/lori-train (native/errors.h, native/README.md). */
export const NATIVE_EXIT_CODES = {
  ok: 0,
  internal: 1,
  usage: 2,
  input: 3,
  backend: 4,
  diverged: 5,
  interrupted: 130,
} as const;

export type NativeExitKind = keyof typeof NATIVE_EXIT_CODES | "crashed";

/** Adapter training methods; full fine-tuning ("full") has its own config, {@link FullTrainConfig}. */
export type TrainMethod = "lori-d" | "lori-s" | "lora" | "dora";
export type TargetModule = "q" | "k" | "v" | "o" | "gate" | "up" | "down";
export type GpuMode = "auto" | "cuda" | "off";

interface BackendOptions {
  /** Compute backend. Default "auto" (CUDA when @node-llama-cpp/linux-x64-cuda loads, else CPU). */
  gpu?: GpuMode;
  /** CPU threads. Default: all hardware threads (pass 1 on small machines, see docs/background.md §5). */
  threads?: number;
  /** Folder with libggml-cpu-*.so. Default: where the binary's libggml-base.so was loaded from. */
  cpuDir?: string;
  /** Folder with libggml-cuda.so. Default: @node-llama-cpp/linux-x64-cuda next to the CPU package. */
  cudaDir?: string;
  /**
   * How frozen base weights are held: "f32" (fast backward; required on CUDA), "native" (the file's F16/quantized
   * types: least memory, ~8x slower backward on CPU), "auto" (f32 on a GPU, and on CPU when it fits in 40 % of RAM).
   * Default "auto".
   */
  frozenWeights?: "auto" | "native" | "f32";
}

interface AdapterOptions {
  /**
   * Default "lori-d". "dora": A, B and the per-row magnitude m trained, W' = m ⊙ (W + s B A) / ||W + s B A|| with
   * the norm per output row held constant in the gradient (PEFT's convention).
   */
  method?: TrainMethod;
  /** Default 8. */
  rank?: number;
  /** Default 2 * rank. */
  alpha?: number;
  /** Seed of the Philox-generated A, 0 .. 2^53-1. Default 0. */
  seed?: number;
  /** Default all seven projections. */
  targets?: readonly TargetModule[];
  /** LoRI-S mask: safetensors with "<target>.lora_b" [out, r], non-zero = trainable. Required for lori-s. */
  mask?: string;
}

/** The training loop's keys, shared by adapter and full training. */
interface TrainLoopOptions {
  /** Base GGUF (llama architecture). */
  model: string;
  /** Token-shard file (src/train/token-shards.ts). */
  shards: string;
  steps: number;
  /** Constant learning rate. Default 1e-4. */
  lr?: number;
  /** Sequences per micro-batch. Default 1. */
  batch?: number;
  /** Micro-batches per optimizer step. Default 1. */
  gradAccum?: number;
  /** Longer sequences are truncated. Default 512. */
  maxLen?: number;
  evalShards?: string;
  /** Evaluate every n steps (and at the end). Default 0: only at the end when there is an eval set. */
  evalInterval?: number;
  /** AdamW moments + step (+ the trained weights); written every `checkpointInterval` steps, on SIGINT and at the end. */
  checkpoint?: string;
  checkpointInterval?: number;
  /** Continue from `checkpoint`. Default false. */
  resume?: boolean;
  /** Default true. */
  shuffle?: boolean;
  /** Seed of the data order. Adapter training defaults it to `seed`. */
  dataSeed?: number;
  /** Defaults 0.9 / 0.999 / 1e-8 / 0 / 1.0 (per-tensor gradient-norm clip; 0 disables). */
  beta1?: number;
  beta2?: number;
  adamEps?: number;
  weightDecay?: number;
  gradClip?: number;
}

export interface TrainConfig extends BackendOptions, AdapterOptions, TrainLoopOptions {
  mode: "train";
  /** Adapter safetensors to write ("<target>.lora_b" [out, r], plus ".lora_a" [r, in] for lora). */
  output: string;
  /** Start B (and A for lora) from this adapter; with a mask, entries outside it keep these values bit for bit. */
  initB?: string;
  /** Hold out this fraction of `shards` (the last sequences) for eval. Default 0. */
  evalFraction?: number;
}

/**
 * Full fine-tuning: every weight of the base trains and the result is a new GGUF model. No adapter keys (rank,
 * alpha, seed, targets, mask, init_b) and no frozen weights; `dataSeed` is the only seed.
 */
export interface FullTrainConfig extends Omit<BackendOptions, "frozenWeights">, TrainLoopOptions {
  mode: "train";
  method: "full";
  /** The trained model (.gguf). */
  output: string;
  dataSeed: number;
}

export interface GradcheckConfig extends BackendOptions, AdapterOptions {
  mode: "gradcheck";
  model: string;
  shards: string;
  /** Default 32. */
  maxLen?: number;
  /** Sequences used. Default 2. */
  batch?: number;
  /** Entries checked. Default 48. */
  entries?: number;
  /** Finite-difference step. Default 0.02. */
  fdEps?: number;
  /** B starts uniform in [-initScale, initScale]. Default 0.1. */
  initScale?: number;
}

export interface LogitsConfig extends BackendOptions {
  mode: "logits";
  model: string;
  shards: string;
  /** Adapter safetensors written by "train" (spec read from its metadata). Default: none (base model). */
  adapter?: string;
  /** Binary F32 output, per sequence [n_tokens, n_vocab]; without it logits come as "logits" events. */
  logitsOut?: string;
  maxLen?: number;
}

export interface ExportGgufConfig {
  mode: "export-gguf";
  model: string;
  adapter: string;
  output: string;
}

export interface SeededAQuery {
  seed: number;
  layer: number;
  module: TargetModule | `${TargetModule}_proj` | number;
  row: number;
  col: number;
  inFeatures: number;
}

export interface SeededAConfig {
  mode: "seeded-a";
  queries: readonly SeededAQuery[];
}

export interface MakeModelConfig {
  mode: "make-model";
  output: string;
  nVocab?: number;
  nEmbd?: number;
  nLayer?: number;
  nHead?: number;
  nHeadKv?: number;
  nFf?: number;
  contextLength?: number;
  tiedEmbeddings?: boolean;
  seed?: number;
  weightType?: "f32" | "f16" | "q8_0" | "q4_k";
}

export type NativeTrainerConfig =
  | TrainConfig
  | FullTrainConfig
  | GradcheckConfig
  | LogitsConfig
  | ExportGgufConfig
  | SeededAConfig
  | MakeModelConfig;

export interface StartEvent {
  event: "start";
  mode: string;
  /** train: the method ("full" for full fine-tuning, with rank 0). */
  method?: string;
  rank?: number;
  backend?: string;
  device?: string;
  threads?: number;
  trainable_params?: number;
  n_train_seqs?: number;
  n_eval_seqs?: number;
  seq_len?: number;
  start_step?: number;
  weight_types?: string;
  file_weight_types?: string;
  philox_kat_ok?: boolean;
}
/**
 * `loss`: summed NLL of the step's supervised tokens divided by its sequences (nats per sequence). `targets`: the
 * supervised tokens of the step (absent from trainers built before it was added), for the loss per token.
 */
export interface StepEvent {
  event: "step";
  step: number;
  loss: number;
  tokens: number;
  targets?: number;
  tokens_per_s: number;
  elapsed_s: number;
}
/** `loss` in nats per sequence; `nll_per_token` in nats per supervised token. */
export interface EvalEvent {
  event: "eval";
  step: number;
  loss: number;
  nll_per_token: number;
  n_seqs: number;
  n_targets: number;
  /** Adapter runs: ||B||_F and max |B| (as published). */
  b_norm?: number;
  b_max_abs?: number;
  /** Runs that train A (lora, dora): ||A - A0||_F / ||A0||_F against A at the start of the run. */
  a_drift?: number;
}
export interface CheckpointEvent {
  event: "checkpoint";
  step: number;
  path: string;
}
export interface InterruptedEvent {
  event: "interrupted";
  step: number;
  checkpoint: string | null;
}
export interface WarningEvent {
  event: "warning";
  message: string;
}
export interface ErrorEvent {
  event: "error";
  code: number;
  message: string;
}
export interface GradcheckEvent {
  event: "gradcheck";
  loss: number;
  checked: number;
  max_rel_err: number;
  median_rel_err: number;
  norm_rel_err: number;
  max_abs_err: number;
  max_abs_grad: number;
  fd_eps: number;
  masked_entries: number;
  masked_nonzero_grads: number;
  masked_fd_max_abs: number;
  /** DoRA: how many of the checked entries are magnitude (m) entries. */
  checked_magnitude: number;
}
export interface SeededAEvent {
  event: "seeded_a";
  seed: string;
  layer: number;
  module: TargetModule;
  row: number;
  col: number;
  in_features: number;
  bits: string;
  value: number;
}
export interface LogitsEvent {
  event: "logits";
  seq: number;
  n_tokens: number;
  values: number[];
}
/** Final event of every mode; which fields are present depends on the mode. */
export interface DoneEvent {
  event: "done";
  mode?: string;
  steps?: number;
  final_loss?: number | null;
  eval_loss?: number;
  trainable_params?: number;
  tokens?: number;
  tokens_per_s?: number;
  peak_rss_mb?: number;
  elapsed_s?: number;
  output?: string;
  loss?: number;
  n_seqs?: number;
  n_vocab?: number;
  n_targets?: number;
  lengths?: number[];
  logits_out?: string;
}

export type TrainerEvent =
  | StartEvent
  | StepEvent
  | EvalEvent
  | CheckpointEvent
  | InterruptedEvent
  | WarningEvent
  | ErrorEvent
  | GradcheckEvent
  | SeededAEvent
  | LogitsEvent
  | DoneEvent;

/** The trainer failed: `kind` names the exit code (or "crashed" when it died from a signal). */
export class NativeTrainerError extends Error {
  constructor(
    message: string,
    readonly kind: NativeExitKind,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null = null,
  ) {
    super(message);
    this.name = "NativeTrainerError";
  }
}

/** The abort reason that ends a trainer with SIGKILL instead of a checkpointed stop (see `signal`). */
export const DISCARD_RUN = "discard-run";

export interface NativeTrainerOptions {
  /** Binary path. Default: $LORI_TRAIN_BIN, else native/build/lori-train of this package. */
  binary?: string;
  /** Forward the parent's SIGINT to the trainer (it checkpoints, then exits 130). Default true. */
  forwardSigint?: boolean;
  /**
   * Aborting sends SIGINT (a clean, checkpointed stop), or SIGKILL when the abort reason is DISCARD_RUN: the
   * caller throws the run away, so waiting for a checkpoint at low priority on a busy machine buys nothing.
   */
  signal?: AbortSignal;
  /** Receives the trainer's stderr (ggml warnings). Default: kept for error messages only. */
  onStderr?: (text: string) => void;
  /** OS scheduling priority of the trainer process (os.setPriority: 19 lowest); a server lowers it to stay responsive. */
  priority?: number;
}

export interface NativeTrainerExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  interrupted: boolean;
}

/** Locates the trainer binary; throws a NativeTrainerError telling how to build it when it is missing. */
export function findTrainerBinary(binary?: string): string {
  const path = binary ?? process.env.LORI_TRAIN_BIN ?? join(packageRoot(), "native", "build", "lori-train");
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new NativeTrainerError(`native trainer not found at ${path}: run npm run build:native`, "usage", null);
  }
  return path;
}

/** Converts a camelCase config to the snake_case JSON the binary reads (nested objects included). */
export function toNativeConfig(config: NativeTrainerConfig): Record<string, unknown> {
  return snakeKeys(config) as Record<string, unknown>;
}

/**
 * One trainer process. Iterate it for its events (JSON lines); iteration ends when the process exits with 0
 * or 130 (interrupted, see `exit`), and throws a NativeTrainerError for any other exit.
 */
export class NativeTrainerRun implements AsyncIterable<TrainerEvent> {
  /** Resolves when the process has exited (never rejects). */
  readonly exit: Promise<NativeTrainerExit>;
  private readonly queue: TrainerEvent[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: NativeTrainerError | undefined;
  private lastError: ErrorEvent | undefined;
  private stderrTail = "";

  private constructor(
    private readonly child: ChildProcess,
    cleanup: () => Promise<void>,
    options: NativeTrainerOptions,
  ) {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => this.onLine(line));
    child.stderr!.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      this.stderrTail = (this.stderrTail + text).slice(-4000);
      options.onStderr?.(text);
    });
    const forward = () => this.interrupt();
    const abort = () => (options.signal?.reason === DISCARD_RUN ? this.kill() : this.interrupt());
    if (options.forwardSigint ?? true) process.on("SIGINT", forward);
    options.signal?.addEventListener("abort", abort, { once: true });
    // Aborted while the process was being spawned: the event has fired already.
    if (options.signal?.aborted) abort();
    const linesClosed = new Promise<void>((resolve) => lines.once("close", resolve));
    this.exit = new Promise<NativeTrainerExit>((resolve) => {
      child.once("error", (error) => {
        this.finish(new NativeTrainerError(`cannot start the native trainer: ${error.message}`, "crashed", null));
        resolve({ exitCode: null, signal: null, interrupted: false });
      });
      child.once("close", async (code, signal) => {
        await linesClosed;
        process.off("SIGINT", forward);
        options.signal?.removeEventListener("abort", abort);
        await cleanup().catch(() => undefined);
        this.finish(this.errorFor(code, signal));
        resolve({ exitCode: code, signal, interrupted: code === NATIVE_EXIT_CODES.interrupted });
      });
    });
  }

  static async start(config: NativeTrainerConfig, options: NativeTrainerOptions = {}): Promise<NativeTrainerRun> {
    const binary = findTrainerBinary(options.binary);
    const dir = await mkdtemp(join(tmpdir(), "lori-train-"));
    const configPath = join(dir, "config.json");
    await writeFile(configPath, JSON.stringify(toNativeConfig(config)));
    const child = spawn(binary, [configPath], { stdio: ["ignore", "pipe", "pipe"] });
    if (options.priority !== undefined && child.pid !== undefined) {
      try {
        setPriority(child.pid, options.priority);
      } catch {
        // Not permitted here (raising priority needs privileges): the run goes on at the inherited priority.
      }
    }
    return new NativeTrainerRun(child, () => rm(dir, { recursive: true, force: true }), options);
  }

  /** Asks the trainer to stop: it writes its checkpoint (when configured) and exits with 130. */
  interrupt(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
  }

  /** Ends the trainer at once, without a checkpoint (the run is being thrown away). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TrainerEvent> {
    while (true) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private onLine(line: string): void {
    if (!line.trim()) return;
    let event: TrainerEvent;
    try {
      event = JSON.parse(line) as TrainerEvent;
    } catch {
      event = { event: "warning", message: `unparsable trainer output: ${line.slice(0, 200)}` };
    }
    if (event.event === "error") this.lastError = event;
    this.push(event);
  }

  private push(event: TrainerEvent): void {
    this.queue.push(event);
    this.wake?.();
    this.wake = undefined;
  }

  private finish(failure: NativeTrainerError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = failure;
    this.wake?.();
    this.wake = undefined;
  }

  private errorFor(code: number | null, signal: NodeJS.Signals | null): NativeTrainerError | undefined {
    if (code === NATIVE_EXIT_CODES.ok || code === NATIVE_EXIT_CODES.interrupted) return undefined;
    if (code === null) {
      const tail = this.stderrTail.trim().split("\n").slice(-3).join(" | ");
      return new NativeTrainerError(`native trainer crashed (signal ${signal})${tail ? `: ${tail}` : ""}`, "crashed", null, signal);
    }
    const kind =
      (Object.keys(NATIVE_EXIT_CODES) as (keyof typeof NATIVE_EXIT_CODES)[]).find((k) => NATIVE_EXIT_CODES[k] === code) ?? "internal";
    const message = this.lastError?.message ?? (this.stderrTail.trim().split("\n").slice(-3).join(" | ") || "no message");
    return new NativeTrainerError(`native trainer failed (${kind}, exit ${code}): ${message}`, kind, code);
  }
}

/** Runs the trainer to completion and returns all its events; throws NativeTrainerError on failure. */
export async function runNativeTrainer(config: NativeTrainerConfig, options?: NativeTrainerOptions): Promise<TrainerEvent[]> {
  const run = await NativeTrainerRun.start(config, options);
  const events: TrainerEvent[] = [];
  for await (const event of run) events.push(event);
  return events;
}

function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (v === undefined) continue;
      out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = snakeKeys(v);
    }
    return out;
  }
  return value;
}

function packageRoot(): string {
  const root = findPackageRoot();
  if (root === undefined) throw new NativeTrainerError("cannot locate the lori-server package root", "usage", null);
  return root;
}
