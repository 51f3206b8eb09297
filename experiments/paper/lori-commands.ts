import { stat } from "node:fs/promises";
import type { TaskId } from "../../src/tasks/task.js";
import { CommandError, jsonDocument, jsonLines, runCli } from "./cli-runner.js";
import { EvalServer } from "./eval-server.js";
import type { MergeMethodId, MethodId, TaskScore } from "./results-schema.js";

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
}

export interface TrainOutcome {
  readonly trainableParams: number;
  readonly finalLoss: number;
  /** The stored adapter's weights file, or the full model file. */
  readonly bytes: number;
  /** The trainer's own time (all phases); the command's wall time when it reports none. */
  readonly trainSeconds: number;
}

export interface AdapterWeight {
  readonly name: string;
  readonly weight: number;
}

export interface EvalOptions {
  readonly model: string;
  readonly adaptersDir: string;
  readonly adapters: readonly AdapterWeight[];
  readonly tasks: readonly TaskId[];
  /** --limit per task (tasks with the same limit share one eval run). */
  readonly limits: Readonly<Record<TaskId, number>>;
  readonly seed: number;
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

  async writeData(dir: string, tasks: readonly TaskId[], trainSize: number, seed: number): Promise<void> {
    await runCli(
      ["eval", "--write-data", dir, "--task", tasks.join(","), "--train-size", `${trainSize}`, "--seed", `${seed}`, "--limit", "1"],
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
    return { trainableParams, finalLoss, bytes, trainSeconds: elapsed.length > 0 ? elapsed.reduce((a, b) => a + b, 0) : seconds };
  }

  async evaluate(o: EvalOptions): Promise<TaskScore[]> {
    const scores = new Map<string, TaskScore>();
    for (const limit of new Set(o.tasks.map((t) => o.limits[t]))) {
      const tasks = o.tasks.filter((t) => o.limits[t] === limit);
      const server = o.shared ? await this.sharedServerFor(o.model, o.adaptersDir) : undefined;
      await server?.waitFor(o.adapters.map((a) => a.name));
      const target = server
        ? ["--url", server.url, "--model", server.modelId]
        : ["--model", o.model, "--adapters-dir", o.adaptersDir, ...this.runFlags()];
      const args = ["eval", ...target, "--task", tasks.join(","), "--limit", `${limit}`, "--seed", `${o.seed}`];
      for (const a of o.adapters) args.push("--adapter", `${a.name}:${a.weight}`);
      args.push("--json");
      const { stdout } = await runCli(args, this.o.cwd);
      const report = jsonDocument(stdout, `lori-server ${args.join(" ")}`) as { tasks?: EvalTaskReport[] };
      for (const r of report.tasks ?? []) scores.set(r.task, toScore(r));
    }
    return o.tasks.map((t) => {
      const score = scores.get(t);
      if (!score) throw new Error(`eval reported no score for task ${t}`);
      return score;
    });
  }

  async merge(method: Exclude<MergeMethodId, "stack">, out: string, inputs: readonly AdapterWeight[], adaptersDir: string): Promise<void> {
    await runCli(
      ["merge", "--method", method, "--out", out, "--adapters-dir", adaptersDir, ...inputs.map((a) => `${a.name}:${a.weight}`)],
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

interface EvalTaskReport {
  readonly task: TaskId;
  readonly examples: number;
  readonly accuracy: number;
  readonly groups?: Readonly<Record<string, { readonly accuracy: number }>>;
}

function toScore(r: EvalTaskReport): TaskScore {
  const groups = Object.entries(r.groups ?? {});
  return {
    task: r.task,
    accuracy: r.accuracy,
    examples: r.examples,
    ...(groups.length > 0 ? { groups: Object.fromEntries(groups.map(([name, g]) => [name, g.accuracy])) } : {}),
  };
}

function num(x: unknown): number | undefined {
  return typeof x === "number" && Number.isFinite(x) ? x : undefined;
}
