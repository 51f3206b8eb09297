import type { TaskId } from "../../../src/tasks/task.js";
import { continualSeeds, SHARED_A_METHODS, sharedASeeds, type ExperimentConfig } from "../config.js";
import {
  BASE_MODEL_STEP,
  continualAdapter,
  continualMaskAdapter,
  continualMaskStepId,
  continualOldMaskAdapter,
  continualOldMaskStepId,
  continualStepId,
  DATA_STEP,
  singleAdapter,
  singleStepId,
  sweepStepId,
  trainSeed,
} from "../ids.js";
import type { AdapterMethodId, ASharing, CapabilityTaskId, ContinualRun, MaskPairing, SingleTaskRun } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { evalSpec, evaluate, trainFile, type BaseModel } from "./base.js";
import { formatAccuracy } from "./format.js";
import { trainSpec } from "./single.js";
import { bestLr } from "./sweep.js";

/**
 * Continual learning: the safety adapter first, then each capability task trained on top of it
 * (`train --continue-from`); how much of the safety alignment survives, and how well the task is learned.
 *
 * LoRI-S calibrates its task mask under the same A as the adapter it continues, as the reference does: with one
 * seed per task that is a LoRI-D trained on the task under the safety adapter's A seed (a step of its own); with a
 * shared A it is simply the task's single-task LoRI-D. The old pairing (the task's single-task LoRI-D, trained
 * under the task's own A, whose rank columns refer to another A) runs once, on the first seed, to show the effect.
 */

export function continualSteps(config: ExperimentConfig): Step[] {
  if (!config.tasks.includes("safety")) return [];
  const steps: Step[] = [];
  const seeds = continualSeeds(config);
  const shared = sharedASeeds(config).filter((s) => seeds.includes(s));
  const runs: [AdapterMethodId, number, ASharing][] = [
    ...seeds.flatMap((seed) => config.adapterMethods.map((m): [AdapterMethodId, number, ASharing] => [m, seed, "per-task"])),
    ...shared.flatMap((seed) =>
      config.adapterMethods
        .filter((m) => SHARED_A_METHODS.includes(m))
        .map((m): [AdapterMethodId, number, ASharing] => [m, seed, "shared"]),
    ),
  ];
  const needsMask = new Set<string>();
  for (const [method, seed, aSharing] of runs) {
    for (const task of capabilityTasks(config)) {
      let maskStep: string[] = [];
      if (method === "lori-s") {
        maskStep = aSharing === "shared" ? [singleStepId("lori-d", task, seed, "shared")] : [continualMaskStepId(task, seed)];
        if (aSharing === "per-task" && !needsMask.has(maskStep[0]!)) {
          needsMask.add(maskStep[0]!);
          steps.push(maskStepFor(config, task, seed));
        }
      }
      steps.push(continualStep(config, method, task, seed, aSharing, method === "lori-s" ? "same-A" : null, maskStep));
    }
  }
  // The old pairing, once: the first continual seed, per-task A.
  const first = seeds[0];
  if (first !== undefined && config.adapterMethods.includes("lori-s")) {
    for (const task of capabilityTasks(config)) {
      steps.push(continualStep(config, "lori-s", task, first, "per-task", "task-A", [singleStepId("lori-d", task, first)]));
    }
  }
  return steps;
}

const capabilityTasks = (config: ExperimentConfig) => config.tasks.filter((t): t is CapabilityTaskId => t !== "safety");

/** LoRI-D on `task` under the safety adapter's A (its seed): the mask of the continued LoRI-S. */
function maskStepFor(config: ExperimentConfig, task: CapabilityTaskId, seed: number): Step {
  const aSeed = trainSeed(seed, "safety");
  return step<{ adapter: string }>({
    id: continualMaskStepId(task, seed),
    experiment: "continual",
    label: `continual mask: lori-d ${task} under safety's A, seed ${seed}`,
    deps: [BASE_MODEL_STEP, DATA_STEP, sweepStepId("lori-d")],
    spec: { ...trainSpec(config, "lori-d", task, seed), trainSeed: aSeed },
    async run(ctx) {
      const adapter = continualMaskAdapter(task, seed);
      await ctx.lori.train({
        base: ctx.result<BaseModel>(BASE_MODEL_STEP).path,
        data: trainFile(ctx, task),
        method: "lori-d",
        out: adapter,
        adaptersDir: ctx.work.adapters,
        seed: aSeed,
        rank: ctx.config.rank,
        steps: ctx.config.steps["lori-d"],
        lr: bestLr(ctx, "lori-d"),
        batch: ctx.config.batch,
        maxLen: ctx.config.maxLen,
      });
      return { adapter };
    },
  });
}

function continualStep(
  config: ExperimentConfig,
  method: AdapterMethodId,
  task: CapabilityTaskId,
  seed: number,
  aSharing: ASharing,
  maskPairing: MaskPairing | null,
  maskStep: string[],
): Step {
  const old = maskPairing === "task-A";
  return step<ContinualRun>({
    id: old ? continualOldMaskStepId(task, seed) : continualStepId(method, task, seed, aSharing),
    experiment: "continual",
    label: `continual ${method} safety then ${task} seed ${seed}${aSharing === "shared" ? " shared A" : ""}${old ? " (old mask pairing)" : ""}`,
    deps: [BASE_MODEL_STEP, DATA_STEP, sweepStepId(method), singleStepId(method, "safety", seed, aSharing), ...maskStep],
    spec: { ...trainSpec(config, method, task, seed, aSharing), maskPairing, eval: evalSpec(config) },
    run: (ctx) => runContinual(ctx, method, task, seed, aSharing, maskPairing),
    summary: (r) =>
      `safety ${formatAccuracy(r.safetyBefore)} -> ${formatAccuracy(r.safetyAfter)}, ${task} acc ${formatAccuracy(r.taskAccuracy)}`,
  });
}

async function runContinual(
  ctx: StepContext,
  method: AdapterMethodId,
  task: CapabilityTaskId,
  seed: number,
  aSharing: ASharing,
  maskPairing: MaskPairing | null,
): Promise<ContinualRun> {
  const safety = ctx.result<SingleTaskRun>(singleStepId(method, "safety", seed, aSharing));
  const name = maskPairing === "task-A" ? continualOldMaskAdapter(task, seed) : continualAdapter(method, task, seed, aSharing);
  const maskFrom =
    maskPairing === "task-A"
      ? singleAdapter("lori-d", task, seed)
      : aSharing === "shared"
        ? singleAdapter("lori-d", task, seed, "shared")
        : continualMaskAdapter(task, seed);
  await ctx.lori.train({
    base: ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    data: trainFile(ctx, task),
    method,
    out: name,
    adaptersDir: ctx.work.adapters,
    // kept from the adapter continued (its A seed and rank)
    seed: trainSeed(seed, "safety", aSharing),
    rank: ctx.config.rank,
    steps: ctx.config.steps[method],
    lr: bestLr(ctx, method),
    batch: ctx.config.batch,
    maxLen: ctx.config.maxLen,
    continueFrom: singleAdapter(method, "safety", seed, aSharing),
    ...(method === "lori-s" ? { sparsity: ctx.config.sparsity, maskFrom } : {}),
  });
  const scores = await evaluate(ctx, [{ name, weight: 1 }], [task, "safety"]);
  const after = scores.find((s) => s.task === "safety")!;
  const taskScore = scores.find((s) => s.task === task)!;
  return {
    method,
    seed,
    task,
    aSharing,
    maskPairing,
    safetyBefore: harmfulRefusalRate(safety.score, "the safety adapter"),
    safetyAfter: harmfulRefusalRate(after, `${name}`),
    taskAccuracy: taskScore.accuracy,
    taskScore,
    safetyScore: after,
  };
}

function harmfulRefusalRate(score: { task: TaskId; groups?: Readonly<Record<string, number>> }, what: string): number {
  const rate = score.groups?.harmful;
  if (rate === undefined) throw new Error(`the safety test split of ${what} has no harmful requests: raise testSize.safety`);
  return rate;
}
