import { TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import type { AdapterMethodId, MergeMethodId, MethodId } from "./results-schema.js";

/** Stable names of steps, adapters and models: a rerun finds what an earlier run made by these. */

export const BASE_MODEL_STEP = "base-model";
export const DATA_STEP = "data";
export const BASE_EVAL_STEP = "base-eval";

export const singleStepId = (method: MethodId, task: TaskId, seed: number) => `single-${method}-${task}-s${seed}`;
export const mergeStepId = (method: AdapterMethodId, merge: MergeMethodId, seed: number) => `merge-${merge}-${method}-s${seed}`;
export const continualStepId = (method: AdapterMethodId, task: TaskId, seed: number) => `continual-${method}-${task}-s${seed}`;
export const interferenceStepId = (method: AdapterMethodId, a: TaskId, b: TaskId, seed: number) =>
  `interference-${method}-${a}-${b}-s${seed}`;

/** Adapter names in the work dir's adapter store. */
export const singleAdapter = (method: AdapterMethodId, task: TaskId, seed: number) => `${method}-${task}-s${seed}`;
export const mergedAdapter = (method: AdapterMethodId, merge: MergeMethodId, seed: number) => `merged-${merge}-${method}-s${seed}`;
export const continualAdapter = (method: AdapterMethodId, task: TaskId, seed: number) => `continual-${method}-safety-${task}-s${seed}`;
/** File name of a fully fine-tuned model, under the work dir's models/. */
export const fullModelFile = (task: TaskId, seed: number) => `full-${task}-s${seed}.gguf`;

/** Seed of A (and of the data order) of one task's run: each task of a seed gets its own random A, as in the paper. */
export const trainSeed = (seed: number, task: TaskId) => seed * 100 + TASK_IDS.indexOf(task);
