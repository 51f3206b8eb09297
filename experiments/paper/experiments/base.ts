import { mkdir, rename, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { readGgufFile } from "../../../src/gguf/gguf-reader.js";
import { toJsonl, type Example, type TaskId } from "../../../src/tasks/task.js";
import { TASKS } from "../../../src/tasks/tasks.js";
import type { ExperimentConfig } from "../config.js";
import { interleaveDev } from "../dev-data.js";
import { BASE_EVAL_STEP, BASE_MODEL_STEP, DATA_STEP } from "../ids.js";
import type { AdapterWeight } from "../lori-commands.js";
import type { MethodId, ModelMethodId, TaskScore } from "../results-schema.js";
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
      label: "train and dev data",
      deps: [],
      // the split rules live in the generators: a change there (say, a new dev split) must redo this step
      spec: {
        tasks: config.tasks,
        trainSize: config.trainSize,
        devSize: config.devSize,
        seed: config.dataSeed,
        splits: "train/dev/test by hash, v2",
      },
      async run(ctx) {
        await mkdir(ctx.work.data, { recursive: true });
        for (const task of config.tasks) {
          const { train, dev } = TASKS[task].generate(config.dataSeed, { train: config.trainSize, dev: config.devSize[task], test: 0 });
          await writeFile(join(ctx.work.data, `${task}.train.jsonl`), toJsonl(train));
          await writeFile(join(ctx.work.data, `${task}.dev.jsonl`), toJsonl(dev));
        }
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

/** The settings every eval depends on (the scorers' version too: a scorer change redoes every eval). */
export function evalSpec(config: ExperimentConfig) {
  return { evalSeed: config.evalSeed, testSize: config.testSize, scorers: "benign safety needs the reference answer" };
}

/** The test examples of a task: read once, by the final runs (selection uses dev). */
export function testExamples(config: ExperimentConfig, task: TaskId): Example[] {
  return TASKS[task].generate(config.evalSeed, { train: 0, test: config.testSize[task] }).test;
}

/** The dev examples of a task (the ones written next to its train data). */
export function devExamples(config: ExperimentConfig, task: TaskId): Example[] {
  return TASKS[task].generate(config.dataSeed, { train: 0, dev: config.devSize[task], test: 0 }).dev;
}

/** Scores `tasks` (their test split, or with `split` "dev" their dev split) on the base model or `model`. */
export function evaluate(
  ctx: StepContext,
  adapters: readonly AdapterWeight[],
  tasks: readonly TaskId[],
  model?: string,
  split: "test" | "dev" = "test",
): Promise<TaskScore[]> {
  const pick = split === "test" ? testExamples : devExamples;
  return ctx.lori.evaluate({
    model: model ?? ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    // Every adapter eval uses the base model: one server for all of them.
    shared: model === undefined,
    adaptersDir: ctx.work.adapters,
    adapters,
    examples: new Map(tasks.map((t) => [t, pick(ctx.config, t)])),
  });
}

/** What a training wrote: an adapter name, or the model file of full fine-tuning or of a merged DoRA adapter. */
export interface Trained {
  readonly method: MethodId;
  /** The adapter name (the model file for full fine-tuning). */
  readonly out: string;
  /** Full fine-tuning's model, or where a DoRA adapter is written merged into the base. */
  readonly model?: string;
}

/**
 * Scores a training's result on `tasks`. A DoRA adapter cannot be served as a GGUF LoRA: it is exported as a merged
 * model (`export --format merged-gguf`) and scored as that.
 */
export async function evaluateTrained(
  ctx: StepContext,
  t: Trained,
  tasks: readonly TaskId[],
  split: "test" | "dev" = "test",
): Promise<TaskScore[]> {
  if (t.model === undefined) return evaluate(ctx, [{ name: t.out, weight: 1 }], tasks, undefined, split);
  if (t.method === "dora") await ctx.lori.exportMerged(t.out, ctx.result<BaseModel>(BASE_MODEL_STEP).path, t.model, ctx.work.adapters);
  return evaluate(ctx, [], tasks, t.model, split);
}

/**
 * Where a training writes and how it is scored: full fine-tuning writes the model `file` names (under the work dir's
 * models/); DoRA writes the adapter `adapter` names and is scored as that file; every other method is the adapter.
 */
export function trainedTarget(
  ctx: StepContext,
  method: MethodId,
  file: (m: ModelMethodId) => string,
  adapter: (m: Exclude<MethodId, "full">) => string,
): Trained {
  if (method === "full") {
    const model = join(ctx.work.models, file(method));
    return { method, out: model, model };
  }
  return { method, out: adapter(method), ...(method === "dora" ? { model: join(ctx.work.models, file(method)) } : {}) };
}

export const trainFile = (ctx: StepContext, task: string) => join(ctx.result<TrainData>(DATA_STEP).dir, `${task}.train.jsonl`);

/**
 * The train data of a run that logs its dev loss: train and dev records in one file, arranged so that the trainer,
 * seeded with `seed`, holds out exactly the dev records (dev-data.ts). Written once per task and seed.
 */
export async function trainFileWithDev(ctx: StepContext, task: TaskId, seed: number): Promise<{ file: string; valFraction: number }> {
  const dir = ctx.result<TrainData>(DATA_STEP).dir;
  const { train, dev } = TASKS[task].generate(ctx.config.dataSeed, { train: ctx.config.trainSize, dev: ctx.config.devSize[task], test: 0 });
  const { records, valFraction } = interleaveDev(train, dev, seed);
  const file = join(dir, `${task}.train+dev.seed${seed}.jsonl`);
  // two steps running at once may both write it (same content): each writes its own file and renames it in place
  const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(temp, toJsonl(records));
  await rename(temp, file);
  return { file, valFraction };
}

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
