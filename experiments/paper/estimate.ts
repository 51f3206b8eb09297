import { TASKS } from "../../src/tasks/tasks.js";
import { continualSeeds, mergesFor, SHARED_A_METHODS, sharedASeeds, trainedMethods, type ExperimentConfig } from "./config.js";
import type { AdapterMethodId, ASharing, MethodId, PaperResults } from "./results-schema.js";

/**
 * How much work a config is, and how long it takes on this machine from measured timings: every training's
 * optimizer steps per method, its dev-loss passes, and every example generated and scored. `npm run paper --
 * --estimate` prints it before anything runs.
 */

export interface WorkCounts {
  /** Trainings (CLI `train` runs), without sweep extensions. */
  readonly trainings: number;
  /** Optimizer steps per method, summed over those trainings. */
  readonly trainSteps: Readonly<Record<MethodId, number>>;
  /** Optimizer steps the sweeps add if every one extends as far as allowed (both tasks, one lr per extension). */
  readonly extensionSteps: Readonly<Record<MethodId, number>>;
  /** Dev sequences the trainer's dev-loss evals run through (forward only). */
  readonly devLossSequences: number;
  /** Examples scored by generation (dev in the sweep, test everywhere else). */
  readonly evalExamples: number;
}

export interface Timings {
  /** Wall seconds per optimizer step of one job (with `jobs` jobs sharing the machine). */
  readonly secondsPerStep: Readonly<Record<MethodId, number>>;
  /** Wall seconds per scored example (generation and scoring), one job. */
  readonly secondsPerEvalExample: number;
  /** What the timings come from, for the printout. */
  readonly source: string;
}

const zero = (): Record<MethodId, number> => ({ full: 0, lora: 0, dora: 0, "lori-d": 0, "lori-s": 0 });

export function countWork(config: ExperimentConfig): WorkCounts {
  const steps = zero();
  const extension = zero();
  let trainings = 0;
  let devLossSequences = 0;
  let evalExamples = 0;
  const capability = config.tasks.filter((t) => t !== "safety");
  const test = (task: (typeof config.tasks)[number]) => config.testSize[task];
  const evalsPerRun = (method: MethodId) => Math.floor(config.steps[method] / config.logEvery) + 1;
  const train = (method: MethodId, task: (typeof config.tasks)[number], devLog: boolean) => {
    trainings++;
    steps[method] += config.steps[method];
    if (devLog) devLossSequences += config.devSize[task] * evalsPerRun(method);
  };
  const sweepTasks = config.sweep.tasks.filter((t) => config.tasks.includes(t));
  for (const method of trainedMethods(config)) {
    for (const task of sweepTasks) {
      for (let i = 0; i < config.sweep.grid[method].length; i++) {
        train(method, task, true);
        evalExamples += config.devSize[task];
      }
      extension[method] += config.sweep.maxExtensions * config.steps[method];
    }
  }
  const sharedMethods = trainedMethods(config).filter((m) => (SHARED_A_METHODS as readonly string[]).includes(m));
  const singles: MethodId[] = [...config.seeds.flatMap(() => trainedMethods(config)), ...sharedASeeds(config).flatMap(() => sharedMethods)];
  for (const method of singles) {
    for (const task of config.tasks) {
      train(method, task, true);
      evalExamples += test(task);
    }
  }
  const allTasks = config.tasks.reduce((sum, t) => sum + test(t), 0);
  const sharedAdapterMethods = config.adapterMethods.filter((m) => SHARED_A_METHODS.includes(m));
  const merges = (methods: readonly AdapterMethodId[], aSharing: ASharing) =>
    methods.reduce((n, m) => n + mergesFor(config, m, aSharing).length, 0);
  evalExamples += config.seeds.length * merges(config.adapterMethods, "per-task") * allTasks;
  evalExamples += sharedASeeds(config).length * merges(sharedAdapterMethods, "shared") * allTasks;
  if (config.tasks.includes("safety")) {
    const seeds = continualSeeds(config);
    const shared = sharedASeeds(config).filter((s) => seeds.includes(s));
    const runs: MethodId[] = [
      ...seeds.flatMap(() => config.adapterMethods),
      ...shared.flatMap(() => sharedAdapterMethods),
      ...(config.adapterMethods.includes("lori-s") && seeds.length > 0 ? ["lori-s" as const] : []), // the old pairing, once
    ];
    for (const method of runs) {
      for (const task of capability) {
        train(method, task, false);
        evalExamples += test(task) + test("safety");
      }
    }
    if (config.adapterMethods.includes("lori-s")) for (const _ of seeds) for (const task of capability) train("lori-d", task, false);
  }
  evalExamples += allTasks; // the base model
  return { trainings, trainSteps: steps, extensionSteps: extension, devLossSequences, evalExamples };
}

/**
 * Wall seconds: each job's work at the measured per-job rates, divided over `jobs` jobs. A dev-loss sequence is
 * a forward pass only: about a third of a training sequence's forward and backward, so `batch` of them cost a
 * third of a step.
 */
export function estimateSeconds(counts: WorkCounts, timings: Timings, config: ExperimentConfig): { low: number; high: number } {
  const methods = Object.keys(counts.trainSteps) as MethodId[];
  const meanStep = methods.reduce((s, m) => s + timings.secondsPerStep[m], 0) / methods.length;
  const train = methods.reduce((s, m) => s + counts.trainSteps[m] * timings.secondsPerStep[m], 0);
  const extension = methods.reduce((s, m) => s + counts.extensionSteps[m] * timings.secondsPerStep[m], 0);
  const devLoss = (counts.devLossSequences / config.batch / 3) * meanStep;
  const evals = counts.evalExamples * timings.secondsPerEvalExample;
  const low = (train + devLoss + evals) / config.jobs;
  return { low, high: low + extension / config.jobs };
}

/**
 * Timings from a results document: seconds per step from its single-task runs (trainSeconds / steps, mean per
 * method), seconds per scored example from their evalSeconds where recorded; results from before evalSeconds
 * existed get it from the whole run: (wall time × jobs − every training's time) / examples scored.
 */
export function timingsFromResults(results: PaperResults, jobs: number, source: string): Timings {
  const perStep = zero();
  const untimed: MethodId[] = [];
  for (const method of Object.keys(perStep) as MethodId[]) {
    const runs = results.single.filter((r) => r.method === method && results.config.steps[method]);
    if (runs.length === 0) untimed.push(method);
    else perStep[method] = runs.reduce((s, r) => s + r.trainSeconds / results.config.steps[method], 0) / runs.length;
  }
  // a method the results predate (DoRA in older runs) gets the slowest measured rate
  const timed = (Object.keys(perStep) as MethodId[]).filter((m) => !untimed.includes(m));
  if (timed.length === 0) throw new Error(`no single-task runs to time in ${source}`);
  const slowest = Math.max(...timed.map((m) => perStep[m]));
  for (const method of untimed) perStep[method] = slowest;
  if (untimed.length > 0) source = `${source} (${untimed.join(", ")}: not in it, timed as its slowest method)`;
  const evalTimed = results.single.filter((r) => typeof r.evalSeconds === "number");
  const evalSeconds =
    evalTimed.length > 0
      ? evalTimed.reduce((s, r) => s + r.evalSeconds!, 0) / evalTimed.reduce((s, r) => s + r.score.examples, 0)
      : wholeRunEvalSeconds(results, perStep, jobs);
  return { secondsPerStep: perStep, secondsPerEvalExample: evalSeconds, source };
}

function wholeRunEvalSeconds(results: PaperResults, perStep: Readonly<Record<MethodId, number>>, jobs: number): number {
  const test = results.config.testSize;
  const examples =
    results.baseScores.reduce((s, x) => s + x.examples, 0) +
    results.single.reduce((s, r) => s + r.score.examples, 0) +
    results.merges.reduce((s, m) => s + m.scores.reduce((t, x) => t + x.examples, 0), 0) +
    results.continual.reduce((s, c) => s + test[c.task] + test.safety, 0);
  const training =
    results.single.reduce((s, r) => s + r.trainSeconds, 0) +
    results.continual.reduce((s, c) => s + results.config.steps[c.method] * perStep[c.method], 0);
  return Math.max(0, results.runtimeSeconds * jobs - training) / Math.max(1, examples);
}

export function formatEstimate(config: ExperimentConfig, counts: WorkCounts, timings: Timings): string {
  const { low, high } = estimateSeconds(counts, timings, config);
  const hours = (s: number) => `${(s / 3600).toFixed(1)} h`;
  const steps = Object.entries(counts.trainSteps)
    .map(([m, n]) => `${m} ${n}`)
    .join(", ");
  const rates = Object.entries(timings.secondsPerStep)
    .map(([m, s]) => `${m} ${s.toFixed(3)}`)
    .join(", ");
  return [
    `paper: config ${config.name}: ${counts.trainings} trainings (optimizer steps: ${steps}), ${counts.evalExamples} scored examples, ` +
      `${counts.devLossSequences} dev-loss sequences, ${config.jobs} jobs`,
    `paper: timings from ${timings.source}: s/step ${rates}; ${timings.secondsPerEvalExample.toFixed(3)} s per scored example`,
    `paper: estimated wall time ${hours(low)}${high > low + 1 ? ` (up to ${hours(high)} if every sweep extends ${config.sweep.maxExtensions}x)` : ""}`,
    `paper: (code examples run a sandboxed node each and cost more than the mean: ${TASKS.code.defaultTestSize} per code eval)`,
  ].join("\n");
}
