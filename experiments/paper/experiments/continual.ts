import type { TaskId } from "../../../src/tasks/task.js";
import type { ExperimentConfig } from "../config.js";
import { BASE_MODEL_STEP, continualAdapter, continualStepId, DATA_STEP, singleAdapter, singleStepId } from "../ids.js";
import type { AdapterMethodId, CapabilityTaskId, ContinualRun, SingleTaskRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluate } from "./base.js";
import { formatAccuracy } from "./format.js";
import { taskTrainOptions, trainSpec } from "./single.js";

/**
 * Continual learning: the safety adapter first, then each capability task trained on top of it
 * (`train --continue-from`); how much of the safety alignment survives, and how well the task is learned.
 */

export function continualSteps(config: ExperimentConfig): Step[] {
  if (!config.tasks.includes("safety")) return [];
  const steps: Step[] = [];
  for (const seed of config.continualSeeds?.filter((s) => config.seeds.includes(s)) ?? config.seeds) {
    for (const method of config.adapterMethods) {
      for (const task of capabilityTasks(config)) {
        const maskStep = method === "lori-s" ? [singleStepId("lori-d", task, seed)] : [];
        steps.push(
          step<ContinualRun>({
            id: continualStepId(method, task, seed),
            experiment: "continual",
            label: `continual ${method} safety then ${task} seed ${seed}`,
            deps: [BASE_MODEL_STEP, DATA_STEP, singleStepId(method, "safety", seed), ...maskStep],
            spec: { ...trainSpec(config, method, task, seed), eval: evalSpec(config) },
            run: (ctx) => runContinual(ctx, method, task, seed),
            summary: (r) =>
              `safety ${formatAccuracy(r.safetyBefore)} -> ${formatAccuracy(r.safetyAfter)}, ${task} acc ${formatAccuracy(r.taskAccuracy)}`,
          }),
        );
      }
    }
  }
  return steps;
}

const capabilityTasks = (config: ExperimentConfig) => config.tasks.filter((t): t is CapabilityTaskId => t !== "safety");

async function runContinual(ctx: StepContext, method: AdapterMethodId, task: CapabilityTaskId, seed: number): Promise<ContinualRun> {
  const safety = ctx.result<SingleTaskRun>(singleStepId(method, "safety", seed));
  const name = continualAdapter(method, task, seed);
  await ctx.lori.train({ ...taskTrainOptions(ctx, method, task, seed, name), continueFrom: singleAdapter(method, "safety", seed) });
  const scores = await evaluate(ctx, [{ name, weight: 1 }], [task, "safety"]);
  const after = scores.find((s) => s.task === "safety")!;
  return {
    method,
    seed,
    task,
    safetyBefore: harmfulRefusalRate(safety.score, "the safety adapter"),
    safetyAfter: harmfulRefusalRate(after, `${name}`),
    taskAccuracy: scores.find((s) => s.task === task)!.accuracy,
  };
}

function harmfulRefusalRate(score: { task: TaskId; groups?: Readonly<Record<string, number>> }, what: string): number {
  const rate = score.groups?.harmful;
  if (rate === undefined) throw new Error(`the safety test split of ${what} has no harmful requests: raise testSize.safety`);
  return rate;
}
