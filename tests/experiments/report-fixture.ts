import type { TaskId } from "../../src/tasks/task.js";
import type {
  AdapterMethodId,
  CapabilityTaskId,
  ContinualRun,
  InterferenceRow,
  MergeMethodId,
  MergeRun,
  MethodId,
  PaperResults,
  SingleTaskRun,
} from "../../experiments/paper/results-schema.js";

/**
 * A small hand-built PaperResults: 2 seeds (1, 2), every method, the four tasks. The numbers are chosen so the
 * summary can be checked by hand (see report.test.ts): e.g. LoRI-S trails LoRA by exactly 2.0 points on code.
 */

export const SEEDS = [1, 2] as const;
export const TASKS: readonly TaskId[] = ["math", "code", "nlu", "safety"];

/** Single-task accuracy per method and task: [seed 1, seed 2]. */
export const SINGLE: Record<MethodId, Record<TaskId, [number, number]>> = {
  full: { math: [0.8, 0.9], code: [0.6, 0.7], nlu: [0.7, 0.7], safety: [0.9, 0.9] },
  lora: { math: [0.5, 0.6], code: [0.4, 0.5], nlu: [0.6, 0.7], safety: [0.8, 0.9] },
  dora: { math: [0.52, 0.62], code: [0.42, 0.5], nlu: [0.62, 0.7], safety: [0.82, 0.9] },
  "lori-d": { math: [0.48, 0.58], code: [0.4, 0.44], nlu: [0.62, 0.66], safety: [0.8, 0.8] },
  "lori-s": { math: [0.5, 0.58], code: [0.39, 0.47], nlu: [0.6, 0.7], safety: [0.85, 0.85] },
};

const PARAMS: Record<MethodId, number> = { full: 1_000_000, lora: 40_000, dora: 42_000, "lori-d": 20_000, "lori-s": 2_000 };
const BYTES: Record<MethodId, number> = { full: 4_000_000, lora: 163_840, dora: 172_032, "lori-d": 81_920, "lori-s": 12_288 };

/** Cat-merged accuracy per method and task: [seed 1, seed 2]. */
export const CAT: Record<AdapterMethodId, Record<TaskId, [number, number]>> = {
  // relative: math .6/.7, code .5/.6, nlu .8/.8, safety .8/.8
  lora: { math: [0.3, 0.42], code: [0.2, 0.3], nlu: [0.48, 0.56], safety: [0.64, 0.72] },
  // relative: math .95/.95, code .9/.95, nlu 1/1, safety .95/1
  "lori-d": { math: [0.456, 0.551], code: [0.36, 0.418], nlu: [0.62, 0.66], safety: [0.76, 0.8] },
  // relative: math .9/.95, everything else 1
  "lori-s": { math: [0.45, 0.551], code: [0.39, 0.47], nlu: [0.6, 0.7], safety: [0.85, 0.85] },
};
/** Linear merges keep 80 % of every single-task score. */
export const LINEAR_FACTOR = 0.8;

/** Continual runs per method and task: [before, after] for seed 1 and seed 2. */
export const CONTINUAL: Record<AdapterMethodId, Partial<Record<CapabilityTaskId, [[number, number], [number, number]]>>> = {
  // kept: .5, .75 (math), .6, .65 (code)
  lora: {
    math: [
      [0.9, 0.45],
      [0.8, 0.6],
    ],
    code: [
      [0.9, 0.54],
      [0.8, 0.52],
    ],
  },
  // kept: .9, .9, .8, .85
  "lori-d": {
    math: [
      [0.9, 0.81],
      [0.8, 0.72],
    ],
    code: [
      [0.9, 0.72],
      [0.8, 0.68],
    ],
  },
  // kept: 1, .95, .9, .9
  "lori-s": {
    math: [
      [0.9, 0.9],
      [0.8, 0.76],
    ],
    code: [
      [0.9, 0.81],
      [0.8, 0.72],
    ],
  },
};
const CONTINUAL_ACCURACY: Record<AdapterMethodId, Record<"math" | "code", [number, number]>> = {
  lora: { math: [0.5, 0.6], code: [0.4, 0.4] },
  "lori-d": { math: [0.45, 0.55], code: [0.38, 0.42] },
  "lori-s": { math: [0.5, 0.56], code: [0.4, 0.44] },
};

export function fixtureResults(): PaperResults {
  const methods: MethodId[] = ["full", "lora", "dora", "lori-d", "lori-s"];
  const adapters: AdapterMethodId[] = ["lora", "lori-d", "lori-s"];
  const single: SingleTaskRun[] = [];
  for (const method of methods) {
    for (const task of TASKS) {
      SEEDS.forEach((seed, i) => {
        single.push({
          method,
          task,
          seed,
          aSharing: "per-task",
          // LoRA's and DoRA's dev-best lr in the fixture's sweep
          lr: method === "lora" || method === "dora" ? 3e-3 : 1e-3,
          log: [{ step: 50, devLoss: 1.2 }],
          score: outcomeScore(task, SINGLE[method][task][i]!, seed),
          trainableParams: PARAMS[method],
          bytes: BYTES[method],
          trainSeconds: method === "full" ? 600 : 60 + i * 10,
          finalLoss: 0.5,
        });
      });
    }
  }
  const weights = { math: 0.5, code: 0.5, nlu: 0.5, safety: 0.5 };
  const merges: MergeRun[] = [];
  for (const method of adapters) {
    for (const merge of ["cat", "linear"] as MergeMethodId[]) {
      SEEDS.forEach((seed, i) => {
        merges.push({
          method,
          merge,
          seed,
          aSharing: "per-task",
          weights,
          scores: TASKS.map((task) =>
            outcomeScore(task, merge === "cat" ? CAT[method][task][i]! : SINGLE[method][task][i]! * LINEAR_FACTOR, seed),
          ),
        });
      });
    }
  }
  const continual: ContinualRun[] = [];
  for (const method of adapters) {
    for (const task of ["math", "code"] as const) {
      SEEDS.forEach((seed, i) => {
        const [before, after] = CONTINUAL[method][task]![i]!;
        continual.push({
          method,
          seed,
          task,
          aSharing: "per-task",
          maskPairing: method === "lori-s" ? "same-A" : null,
          safetyBefore: before,
          safetyAfter: after,
          taskAccuracy: CONTINUAL_ACCURACY[method][task][i]!,
        });
      });
    }
  }
  const interference: InterferenceRow[] = [
    // The same pair in either order is one pair.
    { method: "lora", seed: 1, pair: ["math", "code"], maskJaccard: null, meanAngleDeg: 80, crossTermRatio: 0.3 },
    { method: "lora", seed: 2, pair: ["code", "math"], maskJaccard: null, meanAngleDeg: 82, crossTermRatio: 0.4 },
    { method: "lori-d", seed: 1, pair: ["math", "code"], maskJaccard: null, meanAngleDeg: 89, crossTermRatio: 0.05 },
    { method: "lori-d", seed: 2, pair: ["math", "code"], maskJaccard: null, meanAngleDeg: 90, crossTermRatio: 0.07 },
    { method: "lori-s", seed: 1, pair: ["math", "code"], maskJaccard: 0.1, meanAngleDeg: 89, crossTermRatio: 0.01 },
    { method: "lori-s", seed: 2, pair: ["math", "code"], maskJaccard: 0.2, meanAngleDeg: 89, crossTermRatio: 0.03 },
    { method: "lori-s", seed: 1, pair: ["nlu", "safety"], maskJaccard: 0.05, meanAngleDeg: 88, crossTermRatio: 0.02 },
  ];
  return {
    generatedAt: "2026-11-02T10:00:00.000Z",
    config: {
      base: "models/tiny-base.gguf",
      baseParams: 1_000_000,
      seeds: [...SEEDS],
      trainSize: 512,
      testSize: { math: 100, code: 100, nlu: 100, safety: 100 },
      steps: { full: 200, lora: 300, dora: 300, "lori-d": 300, "lori-s": 300 },
      learningRates: { full: 1e-4, lora: 3e-3, dora: 3e-3, "lori-d": 1e-3, "lori-s": 5e-3 },
      lrGrid: {
        full: [3e-5, 1e-4, 3e-4, 1e-3],
        lora: [3e-4, 1e-3, 3e-3, 1e-2],
        dora: [3e-4, 1e-3, 3e-3, 1e-2],
        "lori-d": [3e-4, 1e-3, 3e-3, 1e-2],
        "lori-s": [1e-3, 3e-3, 1e-2, 3e-2],
      },
      sweepTasks: ["math", "safety"],
      devSize: { math: 50, code: 50, nlu: 50, safety: 50 },
      logEvery: 50,
      aSharings: ["per-task"],
      rank: 8,
      sparsity: 0.9,
      mergeWeights: { lora: 0.4, "lori-d": 0.4, "lori-s": 0.3 },
      smoke: false,
    },
    runtimeSeconds: 7384,
    baseScores: [
      { task: "math", accuracy: 0.1, examples: 100 },
      { task: "code", accuracy: 0.05, examples: 100 },
      { task: "nlu", accuracy: 0.3, examples: 100 },
      { task: "safety", accuracy: 0.5, examples: 100, groups: { harmful: 0.2, benign: 0.8 } },
    ],
    testGroups: {},
    sweeps: [
      {
        method: "lora",
        seed: 1,
        tasks: ["math", "safety"],
        grid: [3e-4, 1e-3, 3e-3, 1e-2],
        points: [3e-4, 1e-3, 3e-3, 1e-2].flatMap((lr, i) =>
          (["math", "safety"] as const).map((task) => ({
            method: "lora" as const,
            task,
            lr,
            devAccuracy: [0.3, 0.5, 0.6, 0.4][i]! + (task === "safety" ? 0.2 : 0),
            devLoss: [1.5, 1.1, 0.9, 1.3][i]!,
            finalLoss: 0.5,
            log: [{ step: 50, devLoss: 1 }],
            secondsPerStep: 0.3,
          })),
        ),
        bestLr: 3e-3,
        extensions: 0,
        atEdge: false,
      },
    ],
    single,
    merges,
    continual,
    interference,
  };
}

/**
 * A score with per-example outcomes: 100 examples; example i is correct when i < accuracy * 100, shifted by the
 * seed so two seeds differ in which examples they get right. Paired differences are then exact and small-variance.
 */
export function outcomeScore(task: TaskId, accuracy: number, seed: number) {
  const n = 100;
  const k = Math.round(accuracy * n);
  const outcomes = Array.from({ length: n }, (_, i) => ((i + seed * 7) % n < k ? "1" : "0")).join("");
  return { task, accuracy, examples: n, outcomes };
}

/** A deep, mutable copy to edit in a test. */
export function mutableFixture(): { -readonly [K in keyof PaperResults]: any } {
  return structuredClone(fixtureResults()) as never;
}
