import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { readGgufFile } from "../../../src/gguf/gguf-reader.js";
import type { TaskId } from "../../../src/tasks/task.js";
import type { ExperimentConfig } from "../config.js";
import { BASE_EVAL_STEP, BASE_MODEL_STEP, DATA_STEP } from "../ids.js";
import type { AdapterWeight } from "../lori-commands.js";
import type { TaskScore } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { formatScores } from "./format.js";

/** The base model (given or created), the train data, and the base model's scores without adapters. */

export interface BaseModel {
  /** Absolute path of the GGUF. */
  readonly path: string;
  /** What results.json calls it: the given path, or a description of the created model. */
  readonly label: string;
  readonly params: number;
}

export interface TrainData {
  readonly dir: string;
}

export async function baseSteps(config: ExperimentConfig, repoRoot: string): Promise<Step[]> {
  const base = config.base;
  // A given file that changes (say, a retrained demo model) makes every result depending on it stale.
  const baseSpec = base.kind === "file" ? { ...base, ...(await fileIdentity(resolve(repoRoot, base.path))) } : base;
  return [
    step<BaseModel>({
      id: BASE_MODEL_STEP,
      experiment: "base",
      label: "base model",
      deps: [],
      spec: baseSpec,
      async run(ctx) {
        if (base.kind === "file") {
          const path = resolve(repoRoot, base.path);
          if ("missing" in baseSpec) throw new Error(`base model ${path} not found: build it, or pass --base FILE.gguf`);
          return { path, label: base.path, params: await countParams(path) };
        }
        const path = join(ctx.work.models, "base.gguf");
        await ctx.lori.createModel(path, base);
        return { path, label: `random llama (${base.layers} layers, d=${base.embd}, model create)`, params: await countParams(path) };
      },
      summary: (m) => `${(m.params / 1e6).toFixed(2)}M parameters`,
    }),
    step<TrainData>({
      id: DATA_STEP,
      experiment: "base",
      label: "train data",
      deps: [],
      spec: { tasks: config.tasks, trainSize: config.trainSize, seed: config.dataSeed },
      async run(ctx) {
        await ctx.lori.writeData(ctx.work.data, config.tasks, config.trainSize, config.dataSeed);
        return { dir: ctx.work.data };
      },
    }),
    step<TaskScore[]>({
      id: BASE_EVAL_STEP,
      experiment: "base",
      label: "base model eval",
      deps: [BASE_MODEL_STEP],
      spec: evalSpec(config),
      run: (ctx) => evaluate(ctx, [], config.tasks),
      summary: formatScores,
    }),
  ];
}

/** The settings every eval depends on. */
export function evalSpec(config: ExperimentConfig) {
  return { evalSeed: config.evalSeed, testSize: config.testSize };
}

/** Scores `tasks` on the base model (or `model`, a fine-tuned one) with `adapters` applied. */
export function evaluate(
  ctx: StepContext,
  adapters: readonly AdapterWeight[],
  tasks: readonly TaskId[],
  model?: string,
): Promise<TaskScore[]> {
  return ctx.lori.evaluate({
    model: model ?? ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    // Every adapter eval uses the base model: one server for all of them.
    shared: model === undefined,
    adaptersDir: ctx.work.adapters,
    adapters,
    tasks,
    limits: ctx.config.testSize,
    seed: ctx.config.evalSeed,
  });
}

export const trainFile = (ctx: StepContext, task: string) => join(ctx.result<TrainData>(DATA_STEP).dir, `${task}.train.jsonl`);

async function fileIdentity(path: string): Promise<{ size: number; mtimeMs: number } | { missing: true }> {
  try {
    const s = await stat(path);
    return { size: s.size, mtimeMs: Math.round(s.mtimeMs) };
  } catch {
    return { missing: true };
  }
}

async function countParams(path: string): Promise<number> {
  const gguf = await readGgufFile(path).catch((error: unknown) => {
    throw new Error(`cannot read base model ${path}: ${(error as Error).message}`);
  });
  return gguf.tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
}
