import type { TaskId } from "../../../src/tasks/task.js";
import type { ExperimentConfig } from "../config.js";
import { interferenceStepId, singleAdapter, singleStepId } from "../ids.js";
import type { AdapterMethodId, InterferenceRow } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";

/** Interference: for every pair of single-task adapters (per method and seed), `inspect --pair` at the merge weight. */

export function interferenceSteps(config: ExperimentConfig): Step[] {
  const steps: Step[] = [];
  for (const seed of config.seeds) {
    for (const method of config.adapterMethods) {
      const weight = config.mergeWeights[method];
      for (const [a, b] of pairs(config.tasks)) {
        steps.push(
          step<InterferenceRow>({
            id: interferenceStepId(method, a, b, seed),
            experiment: "interference",
            label: `interference ${method} ${a}/${b} seed ${seed}`,
            deps: [singleStepId(method, a, seed), singleStepId(method, b, seed)],
            spec: { method, pair: [a, b], seed, weight },
            run: (ctx) => runPair(ctx, method, [a, b], seed, weight),
            summary: (r) =>
              `angle ${r.meanAngleDeg.toFixed(1)} deg, cross ${r.crossTermRatio.toFixed(3)}${r.maskJaccard === null ? "" : `, mask ${r.maskJaccard.toFixed(3)}`}`,
          }),
        );
      }
    }
  }
  return steps;
}

function pairs(tasks: readonly TaskId[]): [TaskId, TaskId][] {
  return tasks.flatMap((a, i) => tasks.slice(i + 1).map((b): [TaskId, TaskId] => [a, b]));
}

async function runPair(
  ctx: StepContext,
  method: AdapterMethodId,
  pair: [TaskId, TaskId],
  seed: number,
  weight: number,
): Promise<InterferenceRow> {
  const [a, b] = pair;
  const report = await ctx.lori.inspectPair(
    singleAdapter(method, a, seed),
    singleAdapter(method, b, seed),
    [weight, weight],
    ctx.work.adapters,
  );
  return {
    method,
    seed,
    pair,
    // Dense B (LoRA, LoRI-D) has no mask: its "overlap" would be 1 by construction.
    maskJaccard: method === "lori-s" ? report.maskOverlap : null,
    meanAngleDeg: report.meanAngleDeg,
    crossTermRatio: report.crossTermRatio,
  };
}
