import { availableParallelism } from "node:os";
import { TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import {
  BASELINE_MERGES,
  PAPER_MERGE_METHODS,
  type AdapterMethodId,
  type ASharing,
  type MergeMethodId,
  type MethodId,
  type PaperConfig,
} from "./results-schema.js";

/** The experiments `npm run paper` runs, and with what settings. `full` is the default; `smoke` is for CI. */

/** The base model: an existing GGUF, or a random one `model create` writes into the work dir. */
export type BaseSpec =
  | { readonly kind: "file"; readonly path: string }
  | {
      readonly kind: "create";
      readonly layers: number;
      readonly embd: number;
      readonly heads: number;
      readonly ff: number;
      readonly seed: number;
    };

export interface ExperimentConfig {
  readonly name: string;
  readonly base: BaseSpec;
  readonly seeds: readonly number[];
  /** Seeds of the continual-learning runs (the most expensive experiment); default `seeds`. */
  readonly continualSeeds?: readonly number[];
  /** Seeds of the shared-A variant (LoRI-D and LoRI-S: single, merge, continual); default `seeds`. */
  readonly sharedASeeds?: readonly number[];
  /** How the A of each task's adapter is seeded: "per-task" always; "shared" too to compare the two. */
  readonly aSharings: readonly ASharing[];
  readonly tasks: readonly TaskId[];
  /** Methods of the single-task table ("lori-d" runs too when "lori-s" needs its masks). */
  readonly methods: readonly MethodId[];
  /** Adapter methods merged, trained continually and inspected for interference. */
  readonly adapterMethods: readonly AdapterMethodId[];
  readonly merges: readonly MergeMethodId[];
  /** Merge methods of the shared-A variant (a subset of `merges`: the claims are decided on per-task A). */
  readonly sharedAMerges: readonly MergeMethodId[];
  /**
   * Adapter methods that also get the seed's merge baselines (BASELINE_MERGES in `merges`). The paper's Table 3
   * applies TIES, DARE, magnitude pruning and SVD to LoRA only, against LoRI's concat and linear merges; doing
   * the same keeps the run near 3 hours.
   */
  readonly baselineMergeMethods: readonly AdapterMethodId[];
  /** Weight of each adapter in a four-adapter merge, per method (the paper's: LoRI-D 0.4, LoRI-S 0.3). */
  readonly mergeWeights: Readonly<Record<AdapterMethodId, number>>;
  /** Seed of the written train data (`eval --write-data --seed`). */
  readonly dataSeed: number;
  readonly trainSize: number;
  /** Seed of the test split `eval` scores on (`eval --seed`). */
  readonly evalSeed: number;
  readonly testSize: Readonly<Record<TaskId, number>>;
  readonly steps: Readonly<Record<MethodId, number>>;
  /**
   * The learning-rate sweep on dev (seed `sweep.seed`, tasks `sweep.tasks`): the initial grid per method, grown by
   * one half-decade past an edge (at most `maxExtensions` times) while the best value sits at that edge.
   */
  readonly sweep: {
    readonly seed: number;
    readonly tasks: readonly TaskId[];
    readonly grid: Readonly<Record<MethodId, readonly number[]>>;
    readonly maxExtensions: number;
  };
  /** Dev examples per task: the sweep scores on them, and every training logs its dev loss on them. */
  readonly devSize: Readonly<Record<TaskId, number>>;
  /** Dev loss every this many steps (and at the end). */
  readonly logEvery: number;
  readonly rank: number;
  readonly sparsity: number;
  readonly batch: number;
  readonly maxLen: number;
  /** --threads of every train and eval. */
  readonly threads: number;
  /** Steps run at once (each with `threads` threads). */
  readonly jobs: number;
  /** --gpu of train and eval; absent: the CLI's default. */
  readonly gpu?: string;
  readonly smoke: boolean;
}

const ALL_METHODS: readonly MethodId[] = ["full", "lora", "dora", "lori-d", "lori-s"];
const ADAPTER_METHODS: readonly AdapterMethodId[] = ["lora", "lori-d", "lori-s"];
const perTask = <T>(f: (task: TaskId) => T) => Object.fromEntries(TASK_IDS.map((t) => [t, f(t)])) as Record<TaskId, T>;

const full: ExperimentConfig = {
  name: "full",
  base: { kind: "file", path: "models/lori-demo.gguf" },
  seeds: [1, 2],
  // Two seeds where the single-task and merging claims are decided, one for continual learning and the shared-A
  // variant; with 150 steps the whole run fits about 2 hours on 2 cores (`npm run paper -- --estimate`). The
  // bootstrap intervals resample test examples as well as seeds, so one seed still gives an interval.
  continualSeeds: [1],
  sharedASeeds: [1],
  tasks: TASK_IDS,
  methods: ALL_METHODS,
  adapterMethods: ADAPTER_METHODS,
  merges: PAPER_MERGE_METHODS,
  sharedAMerges: ["cat"],
  baselineMergeMethods: ["lora"],
  aSharings: ["per-task", "shared"],
  mergeWeights: { lora: 0.4, "lori-d": 0.4, "lori-s": 0.3 },
  dataSeed: 0,
  // the code task has 356 distinct training prompts; every task gets the same count
  trainSize: 350,
  evalSeed: 0,
  testSize: perTask((t) => TASKS[t].defaultTestSize),
  devSize: { math: 100, code: 60, nlu: 100, safety: 80 },
  logEvery: 50,
  // 150 steps of batch 8 are 3.4 epochs of the 350 training records
  steps: { full: 150, lora: 150, dora: 150, "lori-d": 150, "lori-s": 150 },
  // Four half-decade values (30x) per method around where each method is expected to do best: LoRI-S updates
  // ~10 % of B and LoRI-D's A is frozen, so their effective steps are smaller than LoRA's at equal lr.
  sweep: {
    seed: 1,
    tasks: ["math", "safety"],
    grid: {
      full: [3e-5, 1e-4, 3e-4, 1e-3],
      lora: [1e-4, 3e-4, 1e-3, 3e-3],
      dora: [1e-4, 3e-4, 1e-3, 3e-3],
      "lori-d": [3e-4, 1e-3, 3e-3, 1e-2],
      "lori-s": [1e-3, 3e-3, 1e-2, 3e-2],
    },
    maxExtensions: 1,
  },
  rank: 16,
  sparsity: 0.9,
  batch: 8,
  maxLen: 256,
  // the demo model is small: two one-thread jobs use two cores better than one two-thread job
  threads: 1,
  jobs: Math.max(1, Math.min(2, availableParallelism())),
  smoke: false,
};

const smoke: ExperimentConfig = {
  ...full,
  name: "smoke",
  base: { kind: "create", layers: 2, embd: 64, heads: 4, ff: 128, seed: 0 },
  seeds: [1],
  // two tasks (safety is needed by continual learning) and one merge method keep CI's run short; every code path
  // (sweep, both A variants, both mask pairings, merge, interference) still runs
  tasks: ["math", "safety"],
  merges: ["cat", "ties"],
  trainSize: 40,
  testSize: perTask(() => 4),
  devSize: perTask(() => 2),
  logEvery: 2,
  steps: { full: 3, lora: 3, dora: 3, "lori-d": 3, "lori-s": 3 },
  // two learning rates per method (the full config's rule of 4 values over 30x is not checked for smoke runs),
  // one task, no extension (extending is unit-tested in tests/experiments/sweep.test.ts): few trainings for CI
  sweep: {
    seed: 1,
    tasks: ["math"],
    grid: { full: [1e-4, 1e-3], lora: [1e-4, 1e-3], dora: [1e-4, 1e-3], "lori-d": [1e-4, 1e-3], "lori-s": [1e-3, 1e-2] },
    maxExtensions: 0,
  },
  rank: 4,
  batch: 2,
  maxLen: 256,
  threads: 1,
  jobs: Math.max(1, Math.min(2, availableParallelism())),
  smoke: true,
};

export const CONFIGS: Readonly<Record<string, ExperimentConfig>> = { full, smoke };

export type ConfigOverrides = Partial<Pick<ExperimentConfig, "seeds" | "methods" | "adapterMethods" | "threads" | "jobs" | "gpu">> & {
  readonly base?: string;
};

export function resolveConfig(name: string, overrides: ConfigOverrides = {}): ExperimentConfig {
  const config = Object.hasOwn(CONFIGS, name) ? CONFIGS[name]! : undefined;
  if (!config) throw new Error(`unknown config '${name}' (use ${Object.keys(CONFIGS).join(" or ")})`);
  const { base, ...rest } = overrides;
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  return { ...config, ...defined, ...(base !== undefined ? { base: { kind: "file", path: base } } : {}) };
}

/** Seeds that run the shared-A variant (none unless aSharings has "shared"). */
/** The merge methods run for one adapter method and A sharing. */
export function mergesFor(config: ExperimentConfig, method: AdapterMethodId, aSharing: ASharing): MergeMethodId[] {
  const merges = aSharing === "shared" ? config.merges.filter((m) => config.sharedAMerges.includes(m)) : config.merges;
  return merges.filter((m) => !BASELINE_MERGES.includes(m) || config.baselineMergeMethods.includes(method));
}

export function sharedASeeds(config: ExperimentConfig): number[] {
  if (!config.aSharings.includes("shared")) return [];
  return (config.sharedASeeds ?? config.seeds).filter((s) => config.seeds.includes(s));
}

/** Seeds of the continual-learning runs. */
export function continualSeeds(config: ExperimentConfig): number[] {
  return config.continualSeeds?.filter((s) => config.seeds.includes(s)) ?? [...config.seeds];
}

/** Methods with a shared-A variant: LoRI's frozen A is what sharing changes (LoRA trains its A). */
export const SHARED_A_METHODS: readonly AdapterMethodId[] = ["lori-d", "lori-s"];

/** Single-task methods actually trained: LoRI-S masks come from LoRI-D adapters of the same task and seed. */
export function trainedMethods(config: ExperimentConfig): MethodId[] {
  const wanted = new Set<MethodId>([...config.methods, ...config.adapterMethods]);
  if (wanted.has("lori-s")) wanted.add("lori-d");
  return ALL_METHODS.filter((m) => wanted.has(m));
}

/** The `config` section of results.json; `learningRates` are the dev-best ones the later runs used. */
export function paperConfig(
  config: ExperimentConfig,
  baseLabel: string,
  baseParams: number,
  learningRates: Partial<Record<MethodId, number>>,
): PaperConfig {
  return {
    base: baseLabel,
    baseParams,
    seeds: [...config.seeds],
    ...(config.continualSeeds ? { continualSeeds: config.continualSeeds.filter((s) => config.seeds.includes(s)) } : {}),
    trainSize: config.trainSize,
    testSize: { ...config.testSize },
    steps: { ...config.steps },
    learningRates,
    lrGrid: { ...config.sweep.grid },
    sweepTasks: [...config.sweep.tasks],
    devSize: { ...config.devSize },
    logEvery: config.logEvery,
    aSharings: [...config.aSharings],
    rank: config.rank,
    sparsity: config.sparsity,
    mergeWeights: { ...config.mergeWeights },
    smoke: config.smoke,
  };
}
