import type { TaskId } from "../../../src/tasks/task.js";
import { SHARED_A_METHODS, sharedASeeds, trainedMethods, type ExperimentConfig } from "../config.js";
import { BASE_MODEL_STEP, DATA_STEP, modelFile, singleAdapter, singleStepId, sweepStepId, trainSeed } from "../ids.js";
import type { TrainOptions } from "../lori-commands.js";
import type { ASharing, MethodId, SingleTaskRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluateTrained, trainedTarget, trainFileWithDev, type BaseModel } from "./base.js";
import { formatAccuracy } from "./format.js";
import { bestLr } from "./sweep.js";

/**
 * Single-task table: every method trained on every task alone (per seed) at its dev-best lr, scored on that task's
 * test split. The shared-A variant (LoRI-D and LoRI-S, `sharedASeeds`) trains the same with one A for every task.
 */

export function singleSteps(config: ExperimentConfig): Step[] {
  const steps: Step[] = [];
  const runs: [MethodId, number, ASharing][] = [
    ...config.seeds.flatMap((seed) => trainedMethods(config).map((m): [MethodId, number, ASharing] => [m, seed, "per-task"])),
    ...sharedASeeds(config).flatMap((seed) =>
      trainedMethods(config)
        .filter((m) => (SHARED_A_METHODS as readonly string[]).includes(m))
        .map((m): [MethodId, number, ASharing] => [m, seed, "shared"]),
    ),
  ];
  for (const [method, seed, aSharing] of runs) {
    for (const task of config.tasks) {
      const maskStep = method === "lori-s" ? [singleStepId("lori-d", task, seed, aSharing)] : [];
      steps.push(
        step<SingleTaskRun>({
          id: singleStepId(method, task, seed, aSharing),
          experiment: "single",
          label: `single ${method} ${task} seed ${seed}${aSharing === "shared" ? " shared A" : ""}`,
          deps: [BASE_MODEL_STEP, DATA_STEP, sweepStepId(method), ...maskStep],
          spec: { ...trainSpec(config, method, task, seed, aSharing), eval: evalSpec(config) },
          run: (ctx) => runSingle(ctx, method, task, seed, aSharing),
          summary: (r) => `acc ${formatAccuracy(r.score.accuracy)}, loss ${r.finalLoss.toFixed(3)}, lr ${r.lr}`,
        }),
      );
    }
  }
  return steps;
}

/** The settings a single-task training depends on (the lr comes from the sweep step, a dependency). */
export function trainSpec(config: ExperimentConfig, method: MethodId, task: TaskId, seed: number, aSharing: ASharing = "per-task") {
  return {
    method,
    task,
    trainSeed: trainSeed(seed, task, aSharing),
    steps: config.steps[method],
    batch: config.batch,
    maxLen: config.maxLen,
    logEvery: config.logEvery,
    devSize: config.devSize[task],
    ...(method === "full" ? {} : { rank: config.rank }),
    ...(method === "lori-s" ? { sparsity: config.sparsity } : {}),
  };
}

/**
 * How a method trains on a task: at its dev-best lr, A seeded per `aSharing`, logging dev loss; LoRI-S with the
 * mask of the LoRI-D adapter of the same task, seed and A.
 */
export async function taskTrainOptions(
  ctx: StepContext,
  method: MethodId,
  task: TaskId,
  seed: number,
  out: string,
  aSharing: ASharing,
): Promise<TrainOptions> {
  const { config, work } = ctx;
  const aSeed = trainSeed(seed, task, aSharing);
  const data = await trainFileWithDev(ctx, task, aSeed);
  return {
    base: ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    data: data.file,
    method,
    out,
    adaptersDir: work.adapters,
    seed: aSeed,
    rank: config.rank,
    steps: config.steps[method],
    lr: bestLr(ctx, method),
    batch: config.batch,
    maxLen: config.maxLen,
    devLog: { every: config.logEvery, valFraction: data.valFraction },
    ...(method === "lori-s" ? { sparsity: config.sparsity, maskFrom: singleAdapter("lori-d", task, seed, aSharing) } : {}),
  };
}

async function runSingle(ctx: StepContext, method: MethodId, task: TaskId, seed: number, aSharing: ASharing): Promise<SingleTaskRun> {
  const target = trainedTarget(
    ctx,
    method,
    (m) => modelFile(m, task, seed),
    (m) => singleAdapter(m, task, seed, aSharing),
  );
  const options = await taskTrainOptions(ctx, method, task, seed, target.out, aSharing);
  const { log, devLoss: _devLoss, steps: _steps, ...trained } = await ctx.lori.train(options);
  const started = performance.now();
  const [score] = await evaluateTrained(ctx, target, [task]);
  const evalSeconds = (performance.now() - started) / 1000;
  return { method, task, seed, aSharing, lr: options.lr, log, score: score!, ...trained, evalSeconds };
}
