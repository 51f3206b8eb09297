import { TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import type { AdapterMethodId, ASharing, MergeMethodId, MethodId, ModelMethodId } from "./results-schema.js";

/** Stable names of steps, adapters and models: a rerun finds what an earlier run made by these. */

export const BASE_MODEL_STEP = "base-model";
export const DATA_STEP = "data";
export const BASE_EVAL_STEP = "base-eval";

/** The per-task variant keeps the names of the runs made before the shared-A variant existed. */
const sharing = (a: ASharing) => (a === "shared" ? "-sharedA" : "");

export const sweepStepId = (method: MethodId) => `sweep-${method}`;
export const singleStepId = (method: MethodId, task: TaskId, seed: number, a: ASharing = "per-task") =>
  `single-${method}-${task}-s${seed}${sharing(a)}`;
export const mergeStepId = (method: AdapterMethodId, merge: MergeMethodId, seed: number, a: ASharing = "per-task") =>
  `merge-${merge}-${method}-s${seed}${sharing(a)}`;
export const continualStepId = (method: AdapterMethodId, task: TaskId, seed: number, a: ASharing = "per-task") =>
  `continual-${method}-${task}-s${seed}${sharing(a)}`;
/** The old (buggy) LoRI-S pairing, kept once to show what the fix changes. */
export const continualOldMaskStepId = (task: TaskId, seed: number) => `continual-lori-s-${task}-s${seed}-taskAmask`;
/** LoRI-D on a capability task under the safety adapter's A: the mask of the continued LoRI-S. */
export const continualMaskStepId = (task: TaskId, seed: number) => `continual-mask-lori-d-${task}-s${seed}`;
export const interferenceStepId = (method: AdapterMethodId, a: TaskId, b: TaskId, seed: number) =>
  `interference-${method}-${a}-${b}-s${seed}`;

/** Methods that train an adapter (DoRA's is scored as a merged model, but trained and stored as an adapter). */
type TrainedAdapterMethodId = Exclude<MethodId, "full">;

/** Adapter names in the work dir's adapter store. */
export const singleAdapter = (method: TrainedAdapterMethodId, task: TaskId, seed: number, a: ASharing = "per-task") =>
  `${method}-${task}-s${seed}${sharing(a)}`;
export const sweepAdapter = (method: TrainedAdapterMethodId, task: TaskId, lr: number) => `sweep-${method}-${task}-lr${lrLabel(lr)}`;
export const mergedAdapter = (method: AdapterMethodId, merge: MergeMethodId, seed: number, a: ASharing = "per-task") =>
  `merged-${merge}-${method}-s${seed}${sharing(a)}`;
export const continualAdapter = (method: AdapterMethodId, task: TaskId, seed: number, a: ASharing = "per-task") =>
  `continual-${method}-safety-${task}-s${seed}${sharing(a)}`;
export const continualOldMaskAdapter = (task: TaskId, seed: number) => `continual-lori-s-safety-${task}-s${seed}-taskAmask`;
export const continualMaskAdapter = (task: TaskId, seed: number) => `continual-mask-lori-d-${task}-s${seed}`;
/** File name of a fully fine-tuned model or of a DoRA adapter merged into the base, under the work dir's models/. */
export const modelFile = (method: ModelMethodId, task: TaskId, seed: number) => `${method}-${task}-s${seed}.gguf`;
export const sweepModelFile = (method: ModelMethodId, task: TaskId, lr: number) => `sweep-${method}-${task}-lr${lrLabel(lr)}.gguf`;

/** `3e-3`, `1.5e-4` -> `3e-3`, `1p5e-4`: file-name safe. */
export const lrLabel = (lr: number) => lr.toExponential().replace("+", "").replace(".", "p");

/**
 * Seed of A (and of the data order) of one task's run. "per-task": each task of a seed gets its own random A, as our
 * first runs did; "shared": every task of a seed gets the same A (the reference code never seeds A per task).
 */
export const trainSeed = (seed: number, task: TaskId, a: ASharing = "per-task") =>
  a === "shared" ? seed * 100 + 50 : seed * 100 + TASK_IDS.indexOf(task);
