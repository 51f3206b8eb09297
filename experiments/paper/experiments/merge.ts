import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import { mergesFor, SHARED_A_METHODS, sharedASeeds, type ExperimentConfig } from "../config.js";
import { mergedAdapter, mergeStepId, singleAdapter, singleStepId } from "../ids.js";
import type { AdapterMethodId, ASharing, MergeMethodId, MergeRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluate } from "./base.js";
import { formatScores } from "./format.js";

/**
 * Adapter merging: the single-task adapters of one method, seed and A sharing merged with every method of
 * `config.merges` (the list PAPER_MERGE_METHODS), scored on every task.
 */

export function mergeSteps(config: ExperimentConfig): Step[] {
  const runs: [AdapterMethodId, number, ASharing][] = [
    ...config.seeds.flatMap((seed) => config.adapterMethods.map((m): [AdapterMethodId, number, ASharing] => [m, seed, "per-task"])),
    ...sharedASeeds(config).flatMap((seed) =>
      config.adapterMethods
        .filter((m) => SHARED_A_METHODS.includes(m))
        .map((m): [AdapterMethodId, number, ASharing] => [m, seed, "shared"]),
    ),
  ];
  const steps: Step[] = [];
  for (const [method, seed, aSharing] of runs) {
    for (const merge of mergesFor(config, method, aSharing)) {
      steps.push(
        step<MergeRun>({
          id: mergeStepId(method, merge, seed, aSharing),
          experiment: "merge",
          label: `merge ${merge} ${method} seed ${seed}${aSharing === "shared" ? " shared A" : ""}`,
          deps: config.tasks.map((task) => singleStepId(method, task, seed, aSharing)),
          spec: { method, merge, seed, aSharing, weight: mergeWeight(config, method, merge), tasks: config.tasks, eval: evalSpec(config) },
          run: (ctx) => runMerge(ctx, method, merge, seed, aSharing),
          summary: (r) => formatScores(r.scores),
        }),
      );
    }
  }
  return steps;
}

async function runMerge(
  ctx: StepContext,
  method: AdapterMethodId,
  merge: MergeMethodId,
  seed: number,
  aSharing: ASharing,
): Promise<MergeRun> {
  const { config, work } = ctx;
  const weight = mergeWeight(config, method, merge);
  const name = mergedAdapter(method, merge, seed, aSharing);
  // merge refuses an existing name: drop what an interrupted earlier run left.
  await rm(join(work.adapters, name), { recursive: true, force: true });
  await ctx.lori.merge(
    merge,
    name,
    config.tasks.map((task) => ({ name: singleAdapter(method, task, seed, aSharing), weight })),
    work.adapters,
  );
  const scores = await evaluate(ctx, [{ name, weight: 1 }], config.tasks);
  const weights = Object.fromEntries(config.tasks.map((task) => [task, weight])) as Record<TaskId, number>;
  return { method, merge, seed, aSharing, weights, scores };
}

function mergeWeight(config: ExperimentConfig, method: AdapterMethodId, merge: MergeMethodId): number {
  return merge === "stack" ? 1 : config.mergeWeights[method];
}
