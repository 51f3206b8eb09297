import { makeAdapter, materializeA, moduleKey, moduleScale, type Adapter, type LoraModule } from "./adapter.js";
import type { LoriVariant } from "./adapter-config.js";
import type { BaseFingerprint } from "./base-fingerprint.js";
import { doraIsNotALoraError, isDoraAdapter } from "./dora.js";
import { LoraError } from "./errors.js";
import { concatMaskColumns, orMasks } from "./mask.js";

/**
 * Merging adapters into one, with PEFT add_weighted_adapter semantics (c_i = w_i * s_i, s_i = alpha_i / r_i,
 * or alpha_i / sqrt(r_i) under rsLoRA). Every output module has alpha = rank, i.e. scale 1, with the scales
 * folded into the weights, so the result means the same under any loader. Arithmetic is float64, rounded to
 * float32 once per output element. This file holds cat, linear and what every method shares; the pruning
 * methods are in merge-task-arithmetic.ts, svd in merge-svd.ts, and merge-methods.ts dispatches.
 */

/**
 * At most this many adapters in one merge or one request's adapter set. A cat merge's rank is the sum of its
 * inputs' ranks, so time, memory and the compiled file grow linearly with the count: 16 keeps a set of
 * rank-64 adapters at rank 1024 (still below the smallest dims of 7B-class models) and matches the
 * --max-adapters default. 2,000 inputs once took 15 s and 500 MB per merge.
 */
export const MAX_MERGE_INPUTS = 16;
/**
 * |weight| at most this. Adapters are trained at weight 1 and useful weights are O(1) (task arithmetic uses
 * 0.1..2, negation -1); 1e3 leaves room for scaling an adapter down or up by orders of magnitude while
 * keeping weight * scale * B far from float32's range (1e308 once stored 71,680 Inf values).
 */
export const MAX_ABS_WEIGHT = 1e3;

/** Why a weight is refused, or null: finite, non-zero, |w| <= MAX_ABS_WEIGHT. */
export function weightProblem(weight: number): string | null {
  if (!Number.isFinite(weight)) return "must be a finite number";
  if (weight === 0) return "must be non-zero (leave the adapter out instead)";
  if (Math.abs(weight) > MAX_ABS_WEIGHT) return `must be between -${MAX_ABS_WEIGHT} and ${MAX_ABS_WEIGHT}`;
  return null;
}

export interface MergeInput {
  readonly adapter: Adapter;
  /** Any real number within weightProblem's bounds; a negative weight subtracts (PEFT >= 0.18). */
  readonly weight: number;
  /** Recorded in the merged adapter's lineage. */
  readonly name?: string;
}

/** One input's module in a merge. */
export interface Part {
  readonly module: LoraModule;
  /** w_i * s_i */
  readonly c: number;
  /** Position of its adapter in the merge's inputs (dare's random stream depends on it). */
  readonly input: number;
}

export function invalid(message: string): never {
  throw new LoraError("MERGE_INVALID", message);
}

/** Groups modules by (layer, module) across inputs, checking that shapes agree. */
export function collect(inputs: readonly MergeInput[]): Map<string, Part[]> {
  if (inputs.length === 0) invalid("merge needs at least one adapter");
  if (inputs.length > MAX_MERGE_INPUTS) invalid(`merge takes at most ${MAX_MERGE_INPUTS} adapters, got ${inputs.length}`);
  const names = inputs.flatMap((i) => (i.name === undefined ? [] : [i.name]));
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined) invalid(`the adapter '${duplicate}' is listed twice`);
  const groups = new Map<string, Part[]>();
  inputs.forEach(({ adapter, weight, name }, i) => {
    if (isDoraAdapter(adapter)) throw doraIsNotALoraError(name);
    const problem = weightProblem(weight);
    if (problem) invalid(`weight ${i} (${weight}) ${problem}`);
    for (const m of adapter.modules) {
      const parts = groups.get(moduleKey(m.layer, m.module)) ?? [];
      const first = parts[0]?.module;
      if (first && (first.inFeatures !== m.inFeatures || first.outFeatures !== m.outFeatures)) {
        invalid(
          `layer ${m.layer} ${m.module}: adapter ${i} is [${m.outFeatures}x${m.inFeatures}], ` +
            `an earlier one [${first.outFeatures}x${first.inFeatures}]; were they trained for the same base?`,
        );
      }
      parts.push({ module: m, c: weight * moduleScale(m, adapter.config.use_rslora), input: i });
      groups.set(moduleKey(m.layer, m.module), parts);
    }
  });
  return groups;
}

/** The one seed all parts share with equal ranks, if any: then A is common and need not be stacked. */
function sharedSeed(parts: readonly Part[]): number | undefined {
  const [first] = parts;
  if (first?.module.a.kind !== "seeded") return undefined;
  const seed = first.module.a.seed;
  const same = parts.every((p) => p.module.a.kind === "seeded" && p.module.a.seed === seed && p.module.rank === first.module.rank);
  return same ? seed : undefined;
}

/** sum_i coef_i * X_i over equal-length arrays, in float64, rounded once. */
function weightedSum(arrays: readonly Float32Array[], coefs: readonly number[]): Float32Array {
  const acc = new Float64Array(arrays[0]!.length);
  arrays.forEach((x, k) => {
    const c = coefs[k]!;
    for (let i = 0; i < acc.length; i++) acc[i]! += c * x[i]!;
  });
  return Float32Array.from(acc);
}

export function unionMask(parts: readonly Part[]): Uint8Array | undefined {
  return parts.every((p) => p.module.mask) ? orMasks(parts.map((p) => p.module.mask!)) : undefined;
}

export function withMask(m: Omit<LoraModule, "mask">, mask: Uint8Array | undefined): LoraModule {
  return mask ? { ...m, mask } : m;
}

/** Exactly sum_i c_i B_i A_i. Shared seeded A: rank r, A kept seeded. Otherwise ranks add up. */
function catModule(parts: readonly Part[]): LoraModule {
  const base = parts[0]!.module;
  const seed = sharedSeed(parts);
  if (seed !== undefined) {
    const b = weightedSum(
      parts.map((p) => p.module.b),
      parts.map((p) => p.c),
    );
    return withMask({ ...base, alpha: base.rank, a: { kind: "seeded", seed }, b }, unionMask(parts));
  }
  const rank = parts.reduce((n, p) => n + p.module.rank, 0);
  const { inFeatures, outFeatures } = base;
  const a = new Float32Array(rank * inFeatures);
  const b = new Float32Array(outFeatures * rank);
  let row0 = 0;
  for (const { module: m, c } of parts) {
    const ai = materializeA(m);
    for (let i = 0; i < ai.length; i++) a[row0 * inFeatures + i] = c * ai[i]!;
    for (let row = 0; row < outFeatures; row++) {
      for (let k = 0; k < m.rank; k++) b[row * rank + row0 + k] = m.b[row * m.rank + k]!;
    }
    row0 += m.rank;
  }
  const mask = parts.every((p) => p.module.mask)
    ? concatMaskColumns(
        outFeatures,
        parts.map((p) => ({ mask: p.module.mask!, cols: p.module.rank })),
      )
    : undefined;
  return withMask({ ...base, rank, alpha: rank, a: { kind: "dense", data: a }, b }, mask);
}

/**
 * PEFT's split of c_i over the two factors: sqrt(|c_i|) on each, the sign on A only (PEFT >= 0.18), so that
 * B_i A_i keeps the sign of c_i; c_i = 0 counts as positive, as in PEFT.
 */
export function splitWeight(c: number): { readonly a: number; readonly b: number } {
  const root = Math.sqrt(Math.abs(c));
  return { a: c >= 0 ? root : -root, b: root };
}

/** Every input has the module, all at one rank: what PEFT's A/B-wise methods (linear, ties, dare, ...) need. */
export function checkEqualRanks(parts: readonly Part[], inputs: number, method: string): void {
  const base = parts[0]!.module;
  const where = `layer ${base.layer} ${base.module}`;
  if (parts.length !== inputs) invalid(`${method} merge: ${where} is missing from some adapters`);
  if (parts.some((p) => p.module.rank !== base.rank))
    invalid(
      `${method} merge needs equal ranks (use cat or svd otherwise); ${where} has ranks ${parts.map((p) => p.module.rank).join(", ")}`,
    );
}

/** PEFT 'linear': (sum_i sqrt|c_i| B_i)(sum_i sign(c_i) sqrt|c_i| A_i), cross terms B_i A_j included. */
function linearModule(parts: readonly Part[], inputs: number): LoraModule {
  const base = parts[0]!.module;
  checkEqualRanks(parts, inputs, "linear");
  const split = parts.map((p) => splitWeight(p.c));
  const seed = sharedSeed(parts);
  if (seed !== undefined) {
    // A_i = A for all i, so (sum_j a_j) A folds into B and A stays seeded: same product, no stored A.
    const total = split.reduce((x, w) => x + w.a, 0);
    const b = weightedSum(
      parts.map((p) => p.module.b),
      split.map((w) => w.b * total),
    );
    return withMask({ ...base, alpha: base.rank, a: { kind: "seeded", seed }, b }, unionMask(parts));
  }
  const a = weightedSum(
    parts.map((p) => materializeA(p.module)),
    split.map((w) => w.a),
  );
  const b = weightedSum(
    parts.map((p) => p.module.b),
    split.map((w) => w.b),
  );
  return withMask({ ...base, alpha: base.rank, a: { kind: "dense", data: a }, b }, unionMask(parts));
}

function commonFingerprint(inputs: readonly MergeInput[]): BaseFingerprint | null {
  const prints = inputs.flatMap((i) => (i.adapter.config.lori?.base_fingerprint ? [i.adapter.config.lori.base_fingerprint] : []));
  if (prints.some((p) => p.sha256 !== prints[0]!.sha256))
    invalid("the adapters were trained for different base models (base_fingerprint differs)");
  return prints[0] ?? null;
}

/** A merge whose output holds Inf or NaN (weights times scales past float32) is refused, never stored. */
function checkFinite(modules: readonly LoraModule[]): void {
  for (const m of modules) {
    const arrays = m.a.kind === "dense" ? [m.a.data, m.b] : [m.b];
    for (const values of arrays) {
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i]!))
          invalid(`the merged layer ${m.layer} ${m.module} would hold non-finite values: lower the weights`);
      }
    }
  }
}

export interface AssembleOptions {
  readonly method: string;
  /** Method parameters recorded in the lineage entry (density, majority_sign_method, seed, rank). */
  readonly parameters?: Readonly<Record<string, number | string>>;
  /** The result's variant; by default the inputs' common one ("lora" when they differ). */
  readonly variant?: LoriVariant;
}

export function assemble(inputs: readonly MergeInput[], options: AssembleOptions, modules: LoraModule[]): Adapter {
  checkFinite(modules);
  const variants = new Set(inputs.map((i) => i.adapter.config.lori?.variant ?? "lora"));
  const variant: LoriVariant = options.variant ?? (variants.size === 1 ? [...variants][0]! : "lora");
  return makeAdapter(modules, {
    variant,
    baseModel: inputs.find((i) => i.adapter.config.base_model_name_or_path)?.adapter.config.base_model_name_or_path ?? null,
    baseFingerprint: commonFingerprint(inputs),
    lineage: [
      {
        op: "merge",
        method: options.method,
        ...options.parameters,
        inputs: inputs.map((i) => ({ name: i.name ?? null, weight: i.weight, lineage: i.adapter.config.lori?.lineage ?? [] })),
      },
    ],
  });
}

/**
 * Concatenation merge: per module, A = [c_1 A_1; ...; c_n A_n] (rows), B = [B_1 | ... | B_n] (columns),
 * rank sum r_i, scale 1 — exactly sum_i w_i s_i B_i A_i with no cross terms, for any real weights. Modules
 * present in only some adapters merge the ones that have them. When every contributing adapter uses the same
 * seeded A at the same rank, the result stays rank r with A seeded and B = sum_i c_i B_i (same product).
 */
export function mergeCat(inputs: readonly MergeInput[]): Adapter {
  const groups = collect(inputs);
  const modules = [...groups.values()].map((parts) => {
    const live = parts.filter((p) => p.c !== 0);
    return catModule(live.length > 0 ? live : parts.slice(0, 1).map((p) => ({ ...p, c: 0 })));
  });
  return assemble(inputs, { method: "cat" }, modules);
}

/**
 * PEFT's 'linear' merge: A = sum_i sign(c_i) sqrt|c_i| A_i, B = sum_i sqrt|c_i| B_i. Requires equal ranks and
 * every module in every adapter; negative weights subtract (sign on A only, as PEFT >= 0.18). Not
 * sum_i c_i B_i A_i: the product carries cross terms (see interference.ts to measure them). Kept because PEFT
 * and the LoRI paper report it.
 */
export function mergeLinear(inputs: readonly MergeInput[]): Adapter {
  const groups = collect(inputs);
  const modules = [...groups.values()].map((parts) => linearModule(parts, inputs.length));
  return assemble(inputs, { method: "linear" }, modules);
}
