import { stat } from "node:fs/promises";
import { evaluateTask, type TaskReport } from "../../src/tasks/run-eval.js";
import type { Example, TaskId } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { CommandError, jsonDocument, jsonLines, runCli } from "./cli-runner.js";
import { EvalServer } from "./eval-server.js";
import type { MergeMethodId, MethodId, TaskScore, TrainLogPoint } from "./results-schema.js";

/** The lori-server commands the experiments use, with typed options and parsed --json output. */

export interface TrainOptions {
  readonly base: string;
  readonly data: string;
  readonly method: MethodId;
  /** Adapter name, or for "full" the path of the GGUF written. */
  readonly out: string;
  /** The adapter store (unused by "full"). */
  readonly adaptersDir: string;
  /** Seed of A and of the data order (ignored with continueFrom: the adapter keeps its own). */
  readonly seed: number;
  /** Ignored with continueFrom. */
  readonly rank: number;
  readonly steps: number;
  readonly lr: number;
  readonly batch: number;
  readonly maxLen: number;
  readonly sparsity?: number;
  readonly maskFrom?: string;
  readonly continueFrom?: string;
  /** Dev loss every this many steps: `data` ends with the dev records, held out by `valFraction` (see dev-data.ts). */
  readonly devLog?: { readonly every: number; readonly valFraction: number };
}

export interface TrainOutcome {
  readonly trainableParams: number;
  readonly finalLoss: number;
  /** The stored adapter's weights file, or the full model file. */
  readonly bytes: number;
  /** The trainer's own time (all phases); the command's wall time when it reports none. */
  readonly trainSeconds: number;
  /** Optimizer steps the trainer ran (for per-step timings). */
  readonly steps: number;
  /** Dev loss per token at each eval (every `devLog.every` steps and at the end); empty without devLog. */
  readonly log: readonly TrainLogPoint[];
  /** The last dev loss per token; null without devLog. */
  readonly devLoss: number | null;
}

export interface AdapterWeight {
  readonly name: string;
  readonly weight: number;
}

export interface EvalOptions {
  readonly model: string;
  readonly adaptersDir: string;
  readonly adapters: readonly AdapterWeight[];
  /** The examples scored, per task (a test or dev split), scored by the task's own scorer. */
  readonly examples: ReadonlyMap<TaskId, readonly Example[]>;
  /** Score through the shared server (LoriCliOptions.sharedServer), started on this model if none runs yet. */
  readonly shared?: boolean;
}

export interface PairInterference {
  readonly maskOverlap: number;
  readonly meanAngleDeg: number;
  readonly crossTermRatio: number;
}

export interface ModelShape {
  readonly layers: number;
  readonly embd: number;
  readonly heads: number;
  readonly ff: number;
  readonly seed: number;
}

export interface LoriCliOptions {
  /** Working directory of every command. */
  readonly cwd: string;
  /** --threads of train and eval. */
  readonly threads: number;
  readonly gpu?: string;
  /** Evals asking for it (EvalOptions.shared) go to one shared `serve` on this adapter store (`eval --url`), not a server each. */
  readonly sharedServer?: { readonly adaptersDir: string };
}

/**
 * The `merge` flags of each paper merge method. "stack" is cat at weight 1 (the caller sets the weights). New methods
 * (issue 16 item 5) go here with their parameters, e.g. `ties: ["--method", "ties", "--density", "0.5"]` and for
 * dare a fixed `--seed` so the merge is reproducible.
 */
export const MERGE_FLAGS: Readonly<Record<MergeMethodId, readonly string[]>> = {
  cat: ["--method", "cat"],
  linear: ["--method", "linear"],
  stack: ["--method", "cat"],
  // The seed's baselines at PEFT's usual settings: half of each task's entries kept, a fixed dare seed.
  ties: ["--method", "ties", "--density", "0.5"],
  dare_linear: ["--method", "dare_linear", "--density", "0.5", "--seed", "0"],
  dare_ties: ["--method", "dare_ties", "--density", "0.5", "--seed", "0"],
  magnitude_prune: ["--method", "magnitude_prune", "--density", "0.5"],
  svd: ["--method", "svd"],
};

export class LoriCli {
  private server?: { readonly model: string; readonly ready: Promise<EvalServer> };

  constructor(private readonly o: LoriCliOptions) {}

  /** Stops the shared eval server, if one was started. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await (await server.ready.catch(() => undefined))?.close();
  }

  async createModel(out: string, shape: ModelShape): Promise<void> {
    await runCli(
      [
        "model",
        "create",
        "--out",
        out,
        "--layers",
        `${shape.layers}`,
        "--embd",
        `${shape.embd}`,
        "--heads",
        `${shape.heads}`,
        "--ff",
        `${shape.ff}`,
        "--seed",
        `${shape.seed}`,
      ],
      this.o.cwd,
    );
  }

  async train(o: TrainOptions): Promise<TrainOutcome> {
    const args = ["train", "--base", o.base, "--data", o.data, "--out", o.out, "--method", o.method];
    args.push("--steps", `${o.steps}`, "--lr", `${o.lr}`, "--batch", `${o.batch}`, "--max-len", `${o.maxLen}`);
    // Full fine-tuning writes a model file, no adapter: adapter flags do not apply to it.
    if (o.method !== "full") args.push("--adapters-dir", o.adaptersDir);
    // Continuing keeps the adapter's own seed and rank.
    if (!o.continueFrom) args.push("--seed", `${o.seed}`, ...(o.method === "full" ? [] : ["--rank", `${o.rank}`]));
    if (o.method === "lori-s" && o.sparsity !== undefined) args.push("--sparsity", `${o.sparsity}`);
    if (o.maskFrom) args.push("--mask-from", o.maskFrom);
    if (o.continueFrom) args.push("--continue-from", o.continueFrom);
    if (o.devLog) args.push("--val-fraction", `${o.devLog.valFraction}`, "--eval-every", `${o.devLog.every}`);
    else args.push("--val-fraction", "0");
    // A step that runs again replaces what an interrupted earlier run left (adapter, model or checkpoint).
    args.push("--overwrite", "--json", ...this.runFlags());
    const { stdout, seconds } = await runCli(args, this.o.cwd);
    const events = jsonLines(stdout);
    const last = (event: string) => events.filter((e) => e.event === event).at(-1);
    const done = last("done");
    const summary = last("adapter") ?? last("model");
    const trainableParams = num(summary?.trainable_params) ?? num(done?.trainable_params) ?? num(last("start")?.trainable_params);
    const finalLoss = num(summary?.final_train_loss) ?? num(done?.final_loss);
    const command = `lori-server ${args.join(" ")}`;
    if (trainableParams === undefined || finalLoss === undefined)
      throw new CommandError(command, 0, "no trainable_params / final loss in the trainer's JSON events");
    const elapsed = events.filter((e) => e.event === "done").map((e) => num(e.elapsed_s) ?? 0);
    const bytes = num(summary?.adapter_bytes) ?? num(summary?.model_bytes) ?? (o.method === "full" ? (await stat(o.out)).size : undefined);
    if (bytes === undefined) throw new CommandError(command, 0, "no adapter_bytes in the trainer's JSON events");
    const log = events
      .filter((e) => e.event === "eval")
      .flatMap((e) => {
        const step = num(e.step);
        const devLoss = num(e.loss_per_token) ?? num(e.nll_per_token);
        if (step === undefined || devLoss === undefined) return [];
        const extra = { bNorm: num(e.b_norm), bMaxAbs: num(e.b_max_abs), aDrift: num(e.a_drift) };
        return [{ step, devLoss, ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)) }];
      });
    const steps = events.filter((e) => e.event === "step").length;
    return {
      trainableParams,
      finalLoss,
      bytes,
      trainSeconds: elapsed.length > 0 ? elapsed.reduce((a, b) => a + b, 0) : seconds,
      steps,
      log,
      devLoss: log.at(-1)?.devLoss ?? null,
    };
  }

  /**
   * Scores the examples of each task through a server: the shared one (adapters on the base model) or, for another
   * model (a fully fine-tuned one), a server of its own for this call. Greedy decoding, each task's own scorer.
   */
  async evaluate(o: EvalOptions): Promise<TaskScore[]> {
    const shared = o.shared ? this.sharedServerFor(o.model, o.adaptersDir) : undefined;
    const server = await (shared ??
      EvalServer.start({ cwd: this.o.cwd, model: o.model, adaptersDir: o.adaptersDir, threads: this.o.threads, ...this.gpuOption() }));
    try {
      await server.waitFor(o.adapters.map((a) => a.name));
      const scores: TaskScore[] = [];
      for (const [task, examples] of o.examples) {
        const report = await evaluateTask(
          TASKS[task],
          examples,
          { baseUrl: server.url, model: server.modelId },
          { adapter: o.adapters, concurrency: 4 },
        ).catch((error: unknown) => {
          throw new CommandError(
            `eval ${task} on ${o.model} with ${o.adapters.map((a) => a.name).join(",") || "no adapter"}`,
            1,
            (error as Error).message,
          );
        });
        scores.push(toScore(report));
      }
      return scores;
    } finally {
      if (!shared) await server.close();
    }
  }

  async merge(method: MergeMethodId, out: string, inputs: readonly AdapterWeight[], adaptersDir: string): Promise<void> {
    const flags = MERGE_FLAGS[method];
    await runCli(
      ["merge", ...flags, "--out", out, "--adapters-dir", adaptersDir, ...inputs.map((a) => `${a.name}:${a.weight}`)],
      this.o.cwd,
    );
  }

  /** Writes a stored adapter folded into `base` as a model of its own (`export --format merged-gguf`). */
  async exportMerged(adapter: string, base: string, out: string, adaptersDir: string): Promise<void> {
    await runCli(
      ["export", adapter, "--format", "merged-gguf", "--base", base, "--out", out, "--adapters-dir", adaptersDir, "--force"],
      this.o.cwd,
    );
  }

  async inspectPair(a: string, b: string, weights: readonly [number, number], adaptersDir: string): Promise<PairInterference> {
    const args = ["inspect", "--pair", a, b, "--weights", weights.join(","), "--adapters-dir", adaptersDir, "--json"];
    const { stdout } = await runCli(args, this.o.cwd);
    const report = jsonDocument(stdout, `lori-server ${args.join(" ")}`);
    const maskOverlap = num(report.maskOverlap);
    const meanAngleDeg = num((report.principalAnglesDeg as { mean?: unknown } | null)?.mean);
    const crossTermRatio = num(report.crossTermRatio);
    if (maskOverlap === undefined || meanAngleDeg === undefined || crossTermRatio === undefined) {
      throw new CommandError(`lori-server ${args.join(" ")}`, 0, `incomplete pair report: ${stdout.slice(0, 300)}`);
    }
    return { maskOverlap, meanAngleDeg, crossTermRatio };
  }

  private gpuOption(): { gpu?: string } {
    return this.o.gpu ? { gpu: this.o.gpu } : {};
  }

  private runFlags(): string[] {
    return ["--threads", `${this.o.threads}`, ...(this.o.gpu ? ["--gpu", this.o.gpu] : [])];
  }

  /** The shared server, started on the first model asked for; undefined for another model or adapter store. */
  private sharedServerFor(model: string, adaptersDir: string): Promise<EvalServer> | undefined {
    const shared = this.o.sharedServer;
    if (!shared || adaptersDir !== shared.adaptersDir) return undefined;
    this.server ??= {
      model,
      ready: EvalServer.start({ cwd: this.o.cwd, model, adaptersDir, threads: this.o.threads, ...(this.o.gpu ? { gpu: this.o.gpu } : {}) }),
    };
    return this.server.model === model ? this.server.ready : undefined;
  }
}

function toScore(r: TaskReport): TaskScore {
  const groups = Object.entries(r.groups);
  return {
    task: r.task as TaskId,
    accuracy: r.accuracy,
    examples: r.examples,
    ...(groups.length > 0 ? { groups: Object.fromEntries(groups.map(([name, g]) => [name, g.accuracy])) } : {}),
    outcomes: r.outcomes.map((x) => (x.correct ? "1" : "0")).join(""),
  };
}

function num(x: unknown): number | undefined {
  return typeof x === "number" && Number.isFinite(x) ? x : undefined;
}
