import { LoraError } from "./errors.js";
import type { MajoritySignMethod } from "./merge-task-tensors.js";

/**
 * The merge methods and their parameters, with one set of rules shared by the CLI (`--density`,
 * `--majority-sign`, `--seed`, `--rank`) and POST /adapters/merge (`density`, `majority_sign_method`, `seed`,
 * `rank`). A parameter a method does not use is refused rather than ignored, so a typo in the method never
 * silently drops the pruning the caller asked for.
 */

export const MERGE_METHODS = ["cat", "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune", "svd"] as const;
export type MergeMethod = (typeof MERGE_METHODS)[number];

export const MAJORITY_SIGN_METHODS = ["total", "frequency"] as const satisfies readonly MajoritySignMethod[];

/** The methods that prune each task tensor, hence take `density`. */
export const PRUNING_METHODS: readonly MergeMethod[] = ["ties", "dare_linear", "dare_ties", "magnitude_prune"];
/** The methods that elect a majority sign, hence take `majority_sign_method`. */
export const SIGN_ELECTING_METHODS: readonly MergeMethod[] = ["ties", "dare_ties"];
/** The methods that draw at random, hence take `seed`. */
export const RANDOM_METHODS: readonly MergeMethod[] = ["dare_linear", "dare_ties"];
/** The methods that choose their output rank, hence take `rank`. */
export const RANK_CHOOSING_METHODS: readonly MergeMethod[] = ["svd"];

export const DEFAULT_DENSITY = 0.5;
export const DEFAULT_MAJORITY_SIGN_METHOD: MajoritySignMethod = "total";
/** dare's seed when none is given: fixed, so that the same command always writes the same adapter. */
export const DEFAULT_DARE_SEED = 0;

export interface MergeParameters {
  readonly density?: number;
  readonly majoritySignMethod?: MajoritySignMethod;
  readonly seed?: number;
  readonly rank?: number;
}
export type MergeParameterName = keyof MergeParameters;

/** How each edge spells the parameters in its messages. */
export const HTTP_PARAMETER_NAMES: Readonly<Record<MergeParameterName, string>> = {
  density: "density",
  majoritySignMethod: "majority_sign_method",
  seed: "seed",
  rank: "rank",
};

export function isMergeMethod(text: string): text is MergeMethod {
  return (MERGE_METHODS as readonly string[]).includes(text);
}

function list(methods: readonly MergeMethod[]): string {
  return methods.length === 1 ? methods[0]! : `${methods.slice(0, -1).join(", ")} and ${methods.at(-1)}`;
}

const USED_BY: ReadonlyArray<readonly [MergeParameterName, readonly MergeMethod[]]> = [
  ["density", PRUNING_METHODS],
  ["majoritySignMethod", SIGN_ELECTING_METHODS],
  ["seed", RANDOM_METHODS],
  ["rank", RANK_CHOOSING_METHODS],
];

export interface MergeParameterProblem {
  readonly parameter: MergeParameterName;
  /** Starts with the parameter's name as the edge spells it. */
  readonly message: string;
}

/** The first thing wrong with these parameters for this method, or null. */
export function mergeParameterProblem(
  method: MergeMethod,
  parameters: MergeParameters,
  names: Readonly<Record<MergeParameterName, string>> = HTTP_PARAMETER_NAMES,
): MergeParameterProblem | null {
  for (const [parameter, methods] of USED_BY) {
    if (parameters[parameter] !== undefined && !methods.includes(method)) {
      return { parameter, message: `${names[parameter]} applies only to ${list(methods)}, not to ${method}` };
    }
  }
  const { density, majoritySignMethod, seed, rank } = parameters;
  if (density !== undefined && !(Number.isFinite(density) && density > 0 && density <= 1)) {
    return { parameter: "density", message: `${names.density} must be a number with 0 < D <= 1, got ${density}` };
  }
  if (majoritySignMethod !== undefined && !MAJORITY_SIGN_METHODS.includes(majoritySignMethod)) {
    return {
      parameter: "majoritySignMethod",
      message: `${names.majoritySignMethod} must be total or frequency, got ${majoritySignMethod}`,
    };
  }
  if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= 0)) {
    return { parameter: "seed", message: `${names.seed} must be an integer in [0, 2^53 - 1], got ${seed}` };
  }
  if (rank !== undefined && !(Number.isSafeInteger(rank) && rank >= 1)) {
    return { parameter: "rank", message: `${names.rank} must be a positive integer, got ${rank}` };
  }
  return null;
}

/** A merge refused because of one of its parameters: the edges name that parameter (HTTP `param`). */
export class MergeParameterError extends LoraError {
  constructor(
    readonly parameter: MergeParameterName,
    message: string,
  ) {
    super("MERGE_INVALID", message);
  }
}

export interface ResolvedMergeParameters {
  readonly density: number;
  readonly majoritySignMethod: MajoritySignMethod;
  readonly seed: number;
  /** Undefined: the largest input rank. */
  readonly rank: number | undefined;
}

/** Every parameter, defaults filled in; throws MergeParameterError on a problem. */
export function resolveMergeParameters(method: MergeMethod, parameters: MergeParameters): ResolvedMergeParameters {
  const problem = mergeParameterProblem(method, parameters);
  if (problem) throw new MergeParameterError(problem.parameter, problem.message);
  return {
    density: parameters.density ?? DEFAULT_DENSITY,
    majoritySignMethod: parameters.majoritySignMethod ?? DEFAULT_MAJORITY_SIGN_METHOD,
    seed: parameters.seed ?? DEFAULT_DARE_SEED,
    rank: parameters.rank,
  };
}
