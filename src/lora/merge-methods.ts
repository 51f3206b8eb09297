import type { Adapter } from "./adapter.js";
import { assemble, collect, mergeCat, mergeLinear, type MergeInput } from "./merge.js";
import { resolveMergeParameters, type MergeMethod, type MergeParameters } from "./merge-options.js";
import { svdMergeModule } from "./merge-svd.js";
import { pruningMergeModule } from "./merge-task-arithmetic.js";

/**
 * One entry point for every merge method, shared by `lori-server merge` and POST /adapters/merge. Parameters
 * are checked (merge-options.ts) before any input is touched. Unlike PEFT, which silently falls back to
 * `linear` when given a single adapter, a one-input merge applies the method asked for (ties with density 0.5
 * prunes it; svd truncates it).
 */
export function mergeAdapters(inputs: readonly MergeInput[], method: MergeMethod, parameters: MergeParameters = {}): Adapter {
  const resolved = resolveMergeParameters(method, parameters);
  switch (method) {
    case "cat":
      return mergeCat(inputs);
    case "linear":
      return mergeLinear(inputs);
    case "svd": {
      const groups = [...collect(inputs).values()];
      const rank = resolved.rank ?? Math.max(...groups.flatMap((parts) => parts.map((p) => p.module.rank)));
      const modules = groups.map((parts) => svdMergeModule(parts, rank));
      return assemble(inputs, { method, parameters: { rank }, variant: "lora" }, modules);
    }
    case "ties":
    case "dare_linear":
    case "dare_ties":
    case "magnitude_prune": {
      const { density, majoritySignMethod, seed } = resolved;
      const modules = [...collect(inputs).values()].map((parts) => pruningMergeModule(method, parts, inputs.length, resolved));
      const recorded = {
        density,
        ...(method === "ties" || method === "dare_ties" ? { majority_sign_method: majoritySignMethod } : {}),
        ...(method === "dare_linear" || method === "dare_ties" ? { seed } : {}),
      };
      return assemble(inputs, { method, parameters: recorded, variant: "lora" }, modules);
    }
  }
}
