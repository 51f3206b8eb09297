import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import type { ExperimentConfig } from "../config.js";
import { mergedAdapter, mergeStepId, singleAdapter, singleStepId } from "../ids.js";
import type { AdapterMethodId, MergeMethodId, MergeRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluate } from "./base.js";
import { formatScores } from "./format.js";

/** Adapter merging: the single-task adapters of one method and seed merged (cat or linear), scored on every task. */

export function mergeSteps(config: ExperimentConfig): Step[] {
  const steps: Step[] = [];
  for (const seed of config.seeds) {
    for (const method of config.adapterMethods) {
      for (const merge of config.merges) {
        steps.push(
          step<MergeRun>({
            id: mergeStepId(method, merge, seed),
            experiment: "merge",
            label: `merge ${merge} ${method} seed ${seed}`,
            deps: config.tasks.map((task) => singleStepId(method, task, seed)),
            spec: { method, merge, seed, weight: mergeWeight(config, method, merge), tasks: config.tasks, eval: evalSpec(config) },
            run: (ctx) => runMerge(ctx, method, merge, seed),
            summary: (r) => formatScores(r.scores),
          }),
        );
      }
    }
  }
  return steps;
}

async function runMerge(ctx: StepContext, method: AdapterMethodId, merge: MergeMethodId, seed: number): Promise<MergeRun> {
  const { config, work } = ctx;
  const weight = mergeWeight(config, method, merge);
  const name = mergedAdapter(method, merge, seed);
  // merge refuses an existing name: drop what an interrupted earlier run left.
  await rm(join(work.adapters, name), { recursive: true, force: true });
  await ctx.lori.merge(
    merge === "stack" ? "cat" : merge,
    name,
    config.tasks.map((task) => ({ name: singleAdapter(method, task, seed), weight })),
    work.adapters,
  );
  const scores = await evaluate(ctx, [{ name, weight: 1 }], config.tasks);
  const weights = Object.fromEntries(config.tasks.map((task) => [task, weight])) as Record<TaskId, number>;
  return { method, merge, seed, weights, scores };
}

function mergeWeight(config: ExperimentConfig, method: AdapterMethodId, merge: MergeMethodId): number {
  return merge === "stack" ? 1 : config.mergeWeights[method];
}
