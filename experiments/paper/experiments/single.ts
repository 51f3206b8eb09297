import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import { trainedMethods, type ExperimentConfig } from "../config.js";
import { BASE_MODEL_STEP, DATA_STEP, fullModelFile, singleAdapter, singleStepId, trainSeed } from "../ids.js";
import type { MethodId, SingleTaskRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluate, trainFile, type BaseModel } from "./base.js";
import { formatAccuracy } from "./format.js";
import type { TrainOptions } from "../lori-commands.js";

/** Single-task table: every method trained on every task alone (per seed), scored on that task. */

export function singleSteps(config: ExperimentConfig): Step[] {
  const steps: Step[] = [];
  for (const seed of config.seeds) {
    for (const method of trainedMethods(config)) {
      for (const task of config.tasks) {
        const maskStep = method === "lori-s" ? [singleStepId("lori-d", task, seed)] : [];
        steps.push(
          step<SingleTaskRun>({
            id: singleStepId(method, task, seed),
            experiment: "single",
            label: `single ${method} ${task} seed ${seed}`,
            deps: [BASE_MODEL_STEP, DATA_STEP, ...maskStep],
            spec: { ...trainSpec(config, method, task, seed), eval: evalSpec(config) },
            run: (ctx) => runSingle(ctx, method, task, seed),
            summary: (r) => `acc ${formatAccuracy(r.score.accuracy)}, loss ${r.finalLoss.toFixed(3)}`,
          }),
        );
      }
    }
  }
  return steps;
}

/** The settings a single-task training depends on. */
export function trainSpec(config: ExperimentConfig, method: MethodId, task: TaskId, seed: number) {
  return {
    method,
    task,
    trainSeed: trainSeed(seed, task),
    steps: config.steps[method],
    lr: config.learningRates[method],
    batch: config.batch,
    maxLen: config.maxLen,
    ...(method === "full" ? {} : { rank: config.rank }),
    ...(method === "lori-s" ? { sparsity: config.sparsity } : {}),
  };
}

/** How a method trains on a task (LoRI-S with the mask of the LoRI-D adapter of the same task and seed). */
export function taskTrainOptions(ctx: StepContext, method: MethodId, task: TaskId, seed: number, out: string): TrainOptions {
  const { config, work } = ctx;
  return {
    base: ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    data: trainFile(ctx, task),
    method,
    out,
    adaptersDir: work.adapters,
    seed: trainSeed(seed, task),
    rank: config.rank,
    steps: config.steps[method],
    lr: config.learningRates[method],
    batch: config.batch,
    maxLen: config.maxLen,
    ...(method === "lori-s" ? { sparsity: config.sparsity, maskFrom: singleAdapter("lori-d", task, seed) } : {}),
  };
}

async function runSingle(ctx: StepContext, method: MethodId, task: TaskId, seed: number): Promise<SingleTaskRun> {
  const out = method === "full" ? join(ctx.work.models, fullModelFile(task, seed)) : singleAdapter(method, task, seed);
  const trained = await ctx.lori.train(taskTrainOptions(ctx, method, task, seed, out));
  const [score] = method === "full" ? await evaluate(ctx, [], [task], out) : await evaluate(ctx, [{ name: out, weight: 1 }], [task]);
  return { method, task, seed, score: score!, ...trained };
}
