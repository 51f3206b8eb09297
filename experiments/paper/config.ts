import { availableParallelism } from "node:os";
import { TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import type { AdapterMethodId, MergeMethodId, MethodId, PaperConfig } from "./results-schema.js";

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
  readonly tasks: readonly TaskId[];
  /** Methods of the single-task table ("lori-d" runs too when "lori-s" needs its masks). */
  readonly methods: readonly MethodId[];
  /** Adapter methods merged, trained continually and inspected for interference. */
  readonly adapterMethods: readonly AdapterMethodId[];
  readonly merges: readonly MergeMethodId[];
  /** Weight of each adapter in a four-adapter merge, per method (the paper's: LoRI-D 0.4, LoRI-S 0.3). */
  readonly mergeWeights: Readonly<Record<AdapterMethodId, number>>;
  /** Seed of the written train data (`eval --write-data --seed`). */
  readonly dataSeed: number;
  readonly trainSize: number;
  /** Seed of the test split `eval` scores on (`eval --seed`). */
  readonly evalSeed: number;
  readonly testSize: Readonly<Record<TaskId, number>>;
  readonly steps: Readonly<Record<MethodId, number>>;
  readonly learningRates: Readonly<Record<MethodId, number>>;
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

const ALL_METHODS: readonly MethodId[] = ["full", "lora", "lori-d", "lori-s"];
const ADAPTER_METHODS: readonly AdapterMethodId[] = ["lora", "lori-d", "lori-s"];
const perTask = <T>(f: (task: TaskId) => T) => Object.fromEntries(TASK_IDS.map((t) => [t, f(t)])) as Record<TaskId, T>;

const full: ExperimentConfig = {
  name: "full",
  base: { kind: "file", path: "models/lori-demo.gguf" },
  seeds: [1, 2, 3],
  tasks: TASK_IDS,
  methods: ALL_METHODS,
  adapterMethods: ADAPTER_METHODS,
  merges: ["cat", "linear", "stack"],
  mergeWeights: { lora: 0.4, "lori-d": 0.4, "lori-s": 0.3 },
  dataSeed: 0,
  // the code task has 356 distinct training prompts; every task gets the same count
  trainSize: 350,
  evalSeed: 0,
  testSize: perTask((t) => TASKS[t].defaultTestSize),
  steps: { full: 200, lora: 200, "lori-d": 200, "lori-s": 200 },
  // LoRI-S updates only ~10 % of B, so it gets a larger learning rate (as in the paper); the same settings
  // train the demo adapters (experiments/demo/profile.ts). Full fine-tuning changes every weight: a smaller one.
  learningRates: { full: 3e-4, lora: 1e-3, "lori-d": 1e-3, "lori-s": 1e-2 },
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
  trainSize: 40,
  testSize: perTask(() => 3),
  steps: { full: 3, lora: 3, "lori-d": 3, "lori-s": 3 },
  learningRates: { full: 1e-3, lora: 1e-3, "lori-d": 1e-3, "lori-s": 1e-2 },
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

/** Single-task methods actually trained: LoRI-S masks come from LoRI-D adapters of the same task and seed. */
export function trainedMethods(config: ExperimentConfig): MethodId[] {
  const wanted = new Set<MethodId>([...config.methods, ...config.adapterMethods]);
  if (wanted.has("lori-s")) wanted.add("lori-d");
  return ALL_METHODS.filter((m) => wanted.has(m));
}

/** The `config` section of results.json. */
export function paperConfig(config: ExperimentConfig, baseLabel: string, baseParams: number): PaperConfig {
  return {
    base: baseLabel,
    baseParams,
    seeds: [...config.seeds],
    ...(config.continualSeeds ? { continualSeeds: config.continualSeeds.filter((s) => config.seeds.includes(s)) } : {}),
    trainSize: config.trainSize,
    testSize: { ...config.testSize },
    steps: { ...config.steps },
    learningRates: { ...config.learningRates },
    rank: config.rank,
    sparsity: config.sparsity,
    mergeWeights: { ...config.mergeWeights },
    smoke: config.smoke,
  };
}
