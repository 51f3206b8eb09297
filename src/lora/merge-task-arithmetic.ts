import { materializeA, type LoraModule } from "./adapter.js";
import { checkEqualRanks, splitWeight, unionMask, withMask, type Part } from "./merge.js";
import { darePrune, disjointMerge, magnitudePrune, weightedTaskSum, type MajoritySignMethod } from "./merge-task-tensors.js";
import { MODULE_ID } from "./target-modules.js";

/**
 * PEFT's A/B-wise pruning merges (`_generalized_task_arithmetic_weighted_adapter`): per module, the inputs'
 * A matrices form one list of task tensors and their B matrices another; each list is pruned and combined on
 * its own, with weights sign(c_i) sqrt|c_i| for A and sqrt|c_i| for B (c_i = w_i * alpha_i / r_i). So pruning
 * applies to the factors, not to delta W, and the product carries cross terms B_i A_j as in `linear`.
 *
 *   magnitude_prune  sum_i w_i prune_top(T_i, D)
 *   ties             disjoint_merge(prune_top(T_i, D), w, majority sign)
 *   dare_linear      sum_i w_i bernoulli(T_i, D) / D
 *   dare_ties        disjoint_merge(bernoulli(T_i, D) / D, w, majority sign)
 *
 * A seeded LoRI A is materialised before pruning (the pruned A is no longer the seed's), so the result is a
 * plain LoRA adapter: dense A, scale 1 (alpha = rank). If every input is LoRI-S, B stays zero outside the
 * union of their masks (every step maps 0 to 0), and that union is kept as the result's mask.
 */

export type PruningMethod = "ties" | "dare_linear" | "dare_ties" | "magnitude_prune";

export interface PruningParameters {
  readonly density: number;
  readonly majoritySignMethod: MajoritySignMethod;
  readonly seed: number;
}

function combineSide(
  method: PruningMethod,
  parts: readonly Part[],
  side: "A" | "B",
  tensors: readonly Float64Array[],
  weights: readonly number[],
  parameters: PruningParameters,
): Float64Array {
  const { density, majoritySignMethod, seed } = parameters;
  const base = parts[0]!.module;
  const dare = (t: Float64Array, k: number) =>
    darePrune(t, density, { seed, layer: base.layer, moduleId: MODULE_ID[base.module], input: parts[k]!.input, side });
  switch (method) {
    case "magnitude_prune":
      return weightedTaskSum(
        tensors.map((t) => magnitudePrune(t, density)),
        weights,
      );
    case "ties":
      return disjointMerge(
        tensors.map((t) => magnitudePrune(t, density)),
        weights,
        majoritySignMethod,
      );
    case "dare_linear":
      return weightedTaskSum(tensors.map(dare), weights);
    case "dare_ties":
      return disjointMerge(tensors.map(dare), weights, majoritySignMethod);
  }
}

export function pruningMergeModule(
  method: PruningMethod,
  parts: readonly Part[],
  inputs: number,
  parameters: PruningParameters,
): LoraModule {
  checkEqualRanks(parts, inputs, method);
  const base = parts[0]!.module;
  const split = parts.map((p) => splitWeight(p.c));
  const a = combineSide(
    method,
    parts,
    "A",
    parts.map((p) => Float64Array.from(materializeA(p.module))),
    split.map((w) => w.a),
    parameters,
  );
  const b = combineSide(
    method,
    parts,
    "B",
    parts.map((p) => Float64Array.from(p.module.b)),
    split.map((w) => w.b),
    parameters,
  );
  return withMask(
    { ...base, alpha: base.rank, a: { kind: "dense", data: Float32Array.from(a) }, b: Float32Array.from(b) },
    unionMask(parts),
  );
}
