import { randomInt } from "node:crypto";
import { rm } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import type { Llama } from "node-llama-cpp";
import type { AdapterRegistry } from "../engine/adapters/adapter-registry.js";
import type { ModelRegistry } from "../engine/model-registry.js";
import { KindedError } from "../errors/error-kinds.js";
import { scrubPaths } from "../errors/scrub-paths.js";
import type { Principal } from "../serving/principal.js";
import { pathExists, storedAdapterDir } from "../lora/adapter-store.js";
import { DISCARD_RUN, type GpuMode } from "../train/native-trainer.js";
import {
  resumeTraining,
  trainAdapter,
  TrainInterrupted,
  type RunSettings,
  type TrainData,
  type TrainProgress,
  type TrainResult,
} from "../train/train-adapter.js";
import { loadSequences, stepLossPerToken } from "../train/train-common.js";
import { WORK_FILES, workDirFor } from "../train/train-plan.js";
import type { Logger } from "../util/logger.js";
import { FileStore, type StoredFile } from "./file-store.js";
import { adapterNameForJob, creationStamp, fineTunedModelId, jobIdOfModelId, newJobId } from "./ids.js";
import { JobRequestError, resolveTraining, type CreateJobRequest, type ResolvedTraining } from "./job-request.js";
import { isTerminal, JOB_STATUSES, JobStore, type JobRecord, type JobStatus } from "./job-store.js";
import { checkTrainingJsonl } from "./validate-jsonl.js";

export interface FineTuningOptions {
  readonly dataDir: string;
  readonly adaptersDir: string;
  readonly maxFileBytes: number;
  /** Jobs that train at once; the rest wait queued. */
  readonly maxTrainingJobs: number;
  /** CPU threads of each trainer process. */
  readonly threads: number;
  readonly gpu: GpuMode;
  /** `--chat-template` of the server, so training renders chats exactly as serving does. */
  readonly chatTemplate?: string;
  /** Reused for tokenization (vocabulary only). */
  readonly llama?: Llama;
  /** OS priority of trainer processes (19 = lowest): serving keeps the CPU first. */
  readonly priority?: number;
}

/** A trainer process in flight. */
interface RunningJob {
  readonly controller: AbortController;
  done: Promise<void>;
  cancelRequested: boolean;
  tokensPerSecond: number;
  /** Step events are recorded every this many steps (long runs would otherwise log thousands). */
  stepEvery: number;
}

export const TRAINER_PRIORITY = 10;

/** A killed server loses at most this many steps of a job: the trainer checkpoints this often. */
export const CHECKPOINT_EVERY_STEPS = 20;

/** Half the cores (at least 1): the other half stays with serving. */
export function defaultTrainingThreads(): number {
  return Math.max(1, Math.floor(cpus().length / 2));
}

/**
 * The fine-tuning API's engine: uploaded files, jobs and their queue. A job trains in a child process of the
 * native trainer (through `trainAdapter`), at lower priority and with a thread budget; its result is an
 * adapter in the adapters dir, registered the moment the job succeeds. State lives under the data dir: after a
 * restart a running job resumes from its trainer checkpoint (bit-identical to an uninterrupted run) and queued
 * jobs stay queued.
 */
export class FineTuningService {
  private readonly running = new Map<string, RunningJob>();
  private disposed = false;

  private constructor(
    readonly files: FileStore,
    readonly jobs: JobStore,
    private readonly options: FineTuningOptions,
    private readonly models: ModelRegistry,
    private readonly adapters: AdapterRegistry,
    private readonly logger: Logger,
  ) {}

  static async open(
    options: FineTuningOptions,
    deps: { models: ModelRegistry; adapters: AdapterRegistry; logger: Logger },
  ): Promise<FineTuningService> {
    const [files, jobs] = await Promise.all([FileStore.open(options.dataDir), JobStore.open(options.dataDir)]);
    const service = new FineTuningService(files, jobs, options, deps.models, deps.adapters, deps.logger);
    service.recover();
    return service;
  }

  get maxFileBytes(): number {
    return this.options.maxFileBytes;
  }

  // ---- visibility -------------------------------------------------------------------------------------------

  /** The creator of a file or job, and admins, see it; to everyone else it does not exist. */
  sees(principal: Principal, owner: string): boolean {
    return principal.role === "admin" || (principal.id !== undefined && principal.id === owner);
  }

  /** Fine-tuned adapters follow their job's visibility; other adapters are left to the key's allow-list. */
  adapterAccess(principal: Principal): (name: string) => boolean | undefined {
    return (name) => {
      const job = this.jobOfAdapter(name);
      return job ? this.sees(principal, job.owner) : undefined;
    };
  }

  /** `ft:<base>:<suffix>:<job-id>` -> the stored adapter name, for a succeeded job; else undefined. */
  adapterForModelId(modelId: string): string | undefined {
    const jobId = jobIdOfModelId(modelId);
    const job = jobId ? this.jobs.get(jobId) : undefined;
    return job && job.fine_tuned_model === modelId ? job.adapter : undefined;
  }

  /** The fine-tuned model id a stored adapter is served as, when it is a job's result. */
  modelIdForAdapter(name: string): string | undefined {
    return this.jobOfAdapter(name)?.fine_tuned_model ?? undefined;
  }

  private jobOfAdapter(name: string): JobRecord | undefined {
    if (!name.startsWith("ft-")) return undefined;
    return this.jobs.get(`ftjob-${name.slice(3)}`);
  }

  // ---- metrics ----------------------------------------------------------------------------------------------

  jobsByStatus(): Record<JobStatus, number> {
    const counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
    for (const job of this.jobs.list()) counts[job.status]++;
    return counts;
  }

  /** Tokens per second over all jobs training now (each trainer's latest report). */
  trainingTokensPerSecond(): number {
    let sum = 0;
    for (const run of this.running.values()) sum += run.tokensPerSecond;
    return sum;
  }

  /** Jobs waiting for a training slot. */
  queueLength(): number {
    return this.jobs.list().filter((j) => j.status === "queued").length;
  }

  // ---- jobs -------------------------------------------------------------------------------------------------

  /** Checks everything a client can get wrong, then records the job; it validates and queues in the background. */
  async createJob(principal: Principal, request: CreateJobRequest): Promise<JobRecord> {
    const served = this.models.get(request.model);
    if (!served) throw new KindedError("not_found", `The model '${request.model}' does not exist.`, "model_not_found", "model");
    const training = this.trainingFile(principal, request.training_file, "training_file");
    if (request.validation_file) this.trainingFile(principal, request.validation_file, "validation_file");
    const check = checkTrainingJsonl((await this.files.read(training.id)).toString("utf8"));
    let resolved: ResolvedTraining;
    try {
      resolved = resolveTraining(request, check.records, request.seed ?? randomInt(0, 2_147_483_647));
    } catch (error) {
      if (error instanceof JobRequestError) throw new KindedError("invalid_request", error.message, "invalid_value", error.param);
      throw error;
    }
    const id = newJobId();
    const created = creationStamp();
    const job: JobRecord = {
      id,
      owner: principal.id ?? "admin",
      created_at: Math.floor(created / 1000),
      created_ms: created,
      model: served.spec.id,
      base_path: served.spec.path,
      training_file: training.id,
      validation_file: request.validation_file ?? null,
      suffix: request.suffix ?? null,
      metadata: request.metadata ?? null,
      training: resolved,
      adapter: adapterNameForJob(id),
      status: "validating_files",
      fine_tuned_model: null,
      finished_at: null,
      estimated_finish: null,
      trained_tokens: null,
      error: null,
      checkpoints: [],
    };
    await this.jobs.add(job);
    await this.jobs.addEvent(id, { level: "info", type: "message", message: `Created fine-tuning job: ${id}`, data: null });
    void this.validate(job);
    return job;
  }

  /** Stops a job: a queued one at once, a running one through its trainer's clean stop (no adapter is left). */
  async cancel(job: JobRecord): Promise<JobRecord> {
    if (isTerminal(job.status)) {
      throw new KindedError(
        "invalid_request",
        `The job ${job.id} has already ${job.status === "cancelled" ? "been cancelled" : job.status}.`,
        "job_not_cancellable",
        "fine_tuning_job_id",
      );
    }
    const run = this.running.get(job.id);
    if (run) {
      run.cancelRequested = true;
      // Nothing of a cancelled job is kept, so its trainer need not write a checkpoint first.
      run.controller.abort(DISCARD_RUN);
      await run.done;
      return job;
    }
    await this.finish(job, { status: "cancelled" });
    return job;
  }

  /** Stops the trainers with a checkpoint; their jobs stay `running` on disk and resume at the next start. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const run of this.running.values()) run.controller.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private trainingFile(principal: Principal, id: string, param: string): StoredFile {
    const file = this.files.get(id);
    if (!file || !this.sees(principal, file.owner)) throw new KindedError("not_found", `No such file: '${id}'.`, "file_not_found", param);
    if (file.purpose !== "fine-tune")
      throw new KindedError(
        "invalid_request",
        `The file '${id}' has purpose '${file.purpose}'; training needs 'fine-tune'.`,
        "invalid_file_purpose",
        param,
      );
    return file;
  }

  /** After a restart: running jobs resume, validating ones validate again, queued ones wait their turn. */
  private recover(): void {
    for (const job of this.jobs.list()) {
      if (job.status === "running") this.launch(job, true);
      else if (job.status === "validating_files") void this.validate(job);
    }
    this.pump();
  }

  /** The files must still exist and parse (they may have been deleted since the job was created). */
  private async validate(job: JobRecord): Promise<void> {
    try {
      for (const id of [job.training_file, job.validation_file]) {
        if (id === null) continue;
        if (!this.files.get(id)) throw new KindedError("invalid_input", `The file '${id}' was deleted.`, "file_not_found");
        const check = checkTrainingJsonl((await this.files.read(id)).toString("utf8"));
        if (check.problems.length > 0 || check.records === 0)
          throw new KindedError("invalid_input", `The file '${id}' is not valid training data.`, "invalid_file");
      }
      if (job.status !== "validating_files") return;
      await this.jobs.update(job.id, { status: "queued" });
      await this.jobs.addEvent(job.id, { level: "info", type: "message", message: "Validated training files; job queued", data: null });
      this.pump();
    } catch (error) {
      if (job.status !== "validating_files") return;
      await this.finish(job, { status: "failed", error: failure(error, "invalid_training_file") });
    }
  }

  /** Starts queued jobs (oldest first) while training slots are free. */
  private pump(): void {
    if (this.disposed) return;
    for (const job of this.jobs.list()) {
      if (this.running.size >= this.options.maxTrainingJobs) return;
      if (job.status === "queued" && !this.running.has(job.id)) this.launch(job, false);
    }
  }

  private launch(job: JobRecord, resume: boolean): void {
    const run: RunningJob = {
      controller: new AbortController(),
      done: Promise.resolve(),
      cancelRequested: false,
      tokensPerSecond: 0,
      stepEvery: 1,
    };
    this.running.set(job.id, run);
    run.done = this.train(job, run, resume)
      .catch((error: unknown) =>
        this.logger.error("fine_tuning_job_crashed", { job: job.id, error: error instanceof Error ? error.stack : String(error) }),
      )
      .finally(() => {
        this.running.delete(job.id);
        this.pump();
      });
  }

  private async train(job: JobRecord, run: RunningJob, resume: boolean): Promise<void> {
    const { adaptersDir } = this.options;
    const workDir = workDirFor(adaptersDir, job.adapter);
    await this.jobs.update(job.id, { status: "running" });
    await this.jobs.addEvent(job.id, {
      level: "info",
      type: "message",
      message: resume ? "Fine-tuning job resumed" : "Fine-tuning job started",
      data: null,
    });
    const settings: RunSettings = {
      gpu: this.options.gpu,
      threads: this.options.threads,
      forwardSigint: false,
      signal: run.controller.signal,
      priority: this.options.priority ?? TRAINER_PRIORITY,
      checkpointEvery: CHECKPOINT_EVERY_STEPS,
      onProgress: (progress) => this.onProgress(job, run, progress),
      ...(this.options.llama ? { llama: this.options.llama } : {}),
    };
    try {
      let result: TrainResult | undefined;
      // A crash after the adapter was written but before the job was marked: the result is there already.
      const finished = await pathExists(storedAdapterDir(adaptersDir, job.adapter));
      if (!finished) {
        if (resume && (await pathExists(join(workDir, WORK_FILES.state)))) {
          result = await resumeTraining(job.adapter, adaptersDir, settings);
        } else {
          const data = await this.tokenize(job);
          if (run.controller.signal.aborted) throw new TrainInterrupted(0, workDir);
          result = await trainAdapter({
            ...trainOptions(job),
            base: job.base_path,
            data,
            name: job.adapter,
            adaptersDir,
            overwrite: true,
            run: settings,
          });
        }
      }
      await this.adapters.refresh();
      const fineTuned = fineTunedModelId(job.model, job.suffix, job.id);
      const last = result?.phases.at(-1);
      const steps = last?.steps ?? 0;
      await this.finish(job, {
        status: "succeeded",
        fine_tuned_model: fineTuned,
        trained_tokens: result ? result.phases.reduce((n, p) => n + p.tokens, 0) : job.trained_tokens,
        checkpoints: [
          {
            id: `ftckpt-${job.id.slice("ftjob-".length)}-${steps}`,
            created_at: Math.floor(Date.now() / 1000),
            step: steps,
            fine_tuned_model_checkpoint: fineTuned,
            metrics: {
              step: steps,
              train_loss: last?.final_train_loss_per_token ?? last?.final_train_loss ?? null,
              valid_loss: last?.final_val_loss_per_token ?? last?.final_val_loss ?? null,
            },
          },
        ],
      });
    } catch (error) {
      if (run.cancelRequested) {
        await rm(workDir, { recursive: true, force: true });
        await rm(storedAdapterDir(adaptersDir, job.adapter), { recursive: true, force: true });
        await this.finish(job, { status: "cancelled" });
        return;
      }
      // Stopped for a shutdown: the checkpoint stays, and the job resumes at the next start.
      if (error instanceof TrainInterrupted && this.disposed) return;
      await rm(workDir, { recursive: true, force: true });
      await this.finish(job, { status: "failed", error: failure(error, "training_failed") });
    }
  }

  /** Each file tokenized whole (no split): the validation file, when given, is the validation set. */
  private async tokenize(job: JobRecord): Promise<TrainData> {
    const load = async (fileId: string) => {
      const data = {
        file: this.files.contentPath(fileId),
        ...(this.options.chatTemplate ? { chatTemplate: this.options.chatTemplate } : {}),
      };
      const loaded = await loadSequences({
        data,
        base: job.base_path,
        seed: job.training.seed,
        valFraction: 0,
        ...(this.options.llama ? { llama: this.options.llama } : {}),
      });
      return loaded.train;
    };
    const sequences = await load(job.training_file);
    const validation = job.validation_file ? await load(job.validation_file) : [];
    return { sequences, validation, label: job.training_file };
  }

  private onProgress(job: JobRecord, run: RunningJob, progress: TrainProgress): void {
    const { event, totalSteps, phase, phaseIndex, phaseCount } = progress;
    const record = (fields: Parameters<JobStore["addEvent"]>[1]) => void this.jobs.addEvent(job.id, fields).catch(() => undefined);
    if (event.event === "start") {
      run.stepEvery = Math.max(1, Math.ceil(totalSteps / 500));
      record({
        level: "info",
        type: "message",
        message: `Training ${phase} phase (${phaseIndex + 1} of ${phaseCount}): ${totalSteps} steps`,
        data: { phase, total_steps: totalSteps, start_step: event.start_step ?? 0 },
      });
    } else if (event.event === "step") {
      run.tokensPerSecond = event.tokens_per_s;
      const stepsLeft = totalSteps - event.step + (phaseCount - phaseIndex - 1) * totalSteps;
      const secondsPerStep = event.step > 0 ? event.elapsed_s / event.step : 0;
      const eta = Math.round(stepsLeft * secondsPerStep);
      job.estimated_finish = Math.floor(Date.now() / 1000) + eta;
      if (event.step <= 10 || event.step % run.stepEvery === 0 || event.step === totalSteps) {
        // OpenAI reports mean loss per token; the trainer's `loss` is per sequence (kept as train_loss_per_sequence).
        const perToken = stepLossPerToken(event, job.training.hyperparameters.batch_size) ?? event.loss;
        record({
          level: "info",
          type: "metrics",
          message: `Step ${event.step}/${totalSteps}: training loss=${perToken.toFixed(4)}`,
          data: {
            phase,
            step: event.step,
            total_steps: totalSteps,
            train_loss: perToken,
            train_loss_per_sequence: event.loss,
            tokens_per_s: event.tokens_per_s,
            elapsed_s: event.elapsed_s,
            eta_s: eta,
          },
        });
      }
    } else if (event.event === "eval") {
      record({
        level: "info",
        type: "metrics",
        message: `Step ${event.step}/${totalSteps}: validation loss=${event.nll_per_token.toFixed(4)}`,
        data: { phase, step: event.step, total_steps: totalSteps, valid_loss: event.nll_per_token, valid_loss_per_sequence: event.loss },
      });
    } else if (event.event === "checkpoint") {
      record({ level: "info", type: "message", message: `Checkpoint at step ${event.step}`, data: { phase, step: event.step } });
    } else if (event.event === "warning") {
      record({ level: "warn", type: "message", message: scrubPaths(event.message), data: null });
    }
  }

  private async finish(job: JobRecord, change: Parameters<JobStore["update"]>[1]): Promise<void> {
    const status = change.status!;
    const after = { ...job, ...change };
    const message =
      status === "succeeded"
        ? `The job has successfully completed: ${after.fine_tuned_model}`
        : status === "cancelled"
          ? "The job was cancelled"
          : `The job failed: ${after.error?.message ?? ""}`;
    // The final event first: a client that sees the terminal status and then lists the events must find it.
    await this.jobs.addEvent(job.id, { level: status === "failed" ? "error" : "info", type: "message", message, data: null });
    await this.jobs.update(job.id, { ...change, finished_at: Math.floor(Date.now() / 1000), estimated_finish: null });
    this.jobs.endEvents(job.id);
    this.logger.info("fine_tuning_job", { job: job.id, status, fine_tuned_model: job.fine_tuned_model });
  }
}

function trainOptions(job: JobRecord) {
  const t = job.training;
  return {
    method: t.method,
    rank: t.rank,
    alpha: t.alpha,
    seed: t.seed,
    lr: t.learningRate,
    batch: t.hyperparameters.batch_size,
    maxLen: t.maxLen,
    evalEvery: t.evalEvery,
    ...(t.steps !== null ? { steps: t.steps } : { epochs: t.hyperparameters.n_epochs }),
    ...(t.sparsity !== null ? { sparsity: t.sparsity } : {}),
    ...(t.calibrate ? { calibrate: true } : {}),
    ...(t.calibrateLearningRate !== null ? { calibrateLr: t.calibrateLearningRate } : {}),
    ...(t.targets !== null ? { targets: t.targets } : {}),
  };
}

/** A job's `error`: the message without server paths. */
function failure(error: unknown, code: string): { code: string; message: string; param: string | null } {
  const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
  return {
    code: error instanceof KindedError && error.code ? error.code : code,
    message: scrubPaths(message),
    param: error instanceof KindedError ? error.param : null,
  };
}
