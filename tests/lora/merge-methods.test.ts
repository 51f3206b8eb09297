import { describe, expect, it } from "vitest";
import { makeAdapter, materializeA, moduleKey, type Adapter, type LoraModule } from "../../src/lora/adapter.js";
import { LoraError } from "../../src/lora/errors.js";
import type { MergeInput } from "../../src/lora/merge.js";
import { mergeAdapters } from "../../src/lora/merge-methods.js";
import { MergeParameterError, type MergeMethod, type MergeParameters } from "../../src/lora/merge-options.js";
import { dareKeeps } from "../../src/lora/merge-task-tensors.js";
import { philox4x32 } from "../../src/lora/philox.js";
import { MODULE_ID, TARGET_MODULES } from "../../src/lora/target-modules.js";
import { randomModule, rng } from "./helpers.js";

/**
 * Every merge method against a float64 reference written here from the formulas (PEFT's add_weighted_adapter,
 * docs/adapter-format.md "Merges"), independently of src/lora/merge*.ts: top-k by a full sort instead of
 * quickselect, dare's draw re-derived from the documented Philox counter layout, and the svd reference from
 * a two-sided Jacobi eigen-decomposition of W^T W on the fully formed delta W instead of QR + one-sided
 * Jacobi on the factors.
 *
 * Tolerance: the merged factors are stored as float32 (relative rounding 6e-8 per entry) and their product
 * sums at most ~40 terms, so 1e-5 of the largest |delta W| entry leaves two orders of magnitude of margin.
 */
const TOLERANCE = 1e-5;

type Matrix = Float64Array;

function product(b: ArrayLike<number>, a: ArrayLike<number>, out: number, rank: number, inF: number): Matrix {
  const w = new Float64Array(out * inF);
  for (let i = 0; i < out; i++)
    for (let k = 0; k < rank; k++) for (let j = 0; j < inF; j++) w[i * inF + j]! += b[i * rank + k]! * a[k * inF + j]!;
  return w;
}

/** delta W of every module of a merged adapter: scale must be 1 (alpha = rank), checked here too. */
function mergedDeltas(adapter: Adapter): Map<string, Matrix> {
  const out = new Map<string, Matrix>();
  for (const m of adapter.modules) {
    expect(m.alpha, "merged modules have scale 1").toBe(m.rank);
    out.set(moduleKey(m.layer, m.module), product(m.b, materializeA(m), m.outFeatures, m.rank, m.inFeatures));
  }
  return out;
}

/** max |actual - expected| / max |expected| per module; returns the worst over modules. */
function maxRelativeError(actual: Map<string, Matrix>, expected: Map<string, Matrix>): number {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  let worst = 0;
  for (const [key, e] of expected) {
    const a = actual.get(key)!;
    let diff = 0;
    let scale = 0;
    e.forEach((x, i) => {
      diff = Math.max(diff, Math.abs(a[i]! - x));
      scale = Math.max(scale, Math.abs(x));
    });
    worst = Math.max(worst, scale === 0 ? diff : diff / scale);
  }
  return worst;
}

// ---- the reference ----------------------------------------------------------------------------------------

/** c_i = w_i * alpha_i / r_i (alpha_i / sqrt(r_i) under rsLoRA). */
function coefficient(input: MergeInput, m: LoraModule): number {
  const r = input.adapter.config.use_rslora ? Math.sqrt(m.rank) : m.rank;
  return (input.weight * m.alpha) / r;
}

function topK(t: Matrix, density: number): Matrix {
  if (density >= 1) return Float64Array.from(t);
  const k = Math.floor(density * t.length);
  const order = Array.from(t, (_, i) => i).sort((x, y) => Math.abs(t[y]!) - Math.abs(t[x]!) || x - y);
  const out = new Float64Array(t.length);
  for (const i of order.slice(0, k)) out[i] = t[i]!;
  return out;
}

function bernoulli(t: Matrix, density: number, seed: number, input: number, side: 0 | 1, layer: number, moduleId: number): Matrix {
  if (density >= 1) return Float64Array.from(t);
  return t.map((x, i) => {
    const [word] = philox4x32([i, 2 * input + side, 0x44415245, 16 * layer + moduleId], [seed % 2 ** 32, Math.floor(seed / 2 ** 32)]);
    return Math.floor(word / 256) / 2 ** 24 < density ? x / density : 0;
  });
}

function electAndAverage(ts: Matrix[], ws: number[], method: "total" | "frequency"): Matrix {
  return ts[0]!.map((_, j) => {
    const vote = ts.reduce((s, t) => s + (method === "total" ? t[j]! : t[j]! > 0 ? 1 : t[j]! < 0 ? -1 : 0), 0);
    const sign = vote >= 0 ? 1 : -1;
    const agreeing = ts.map((t, i) => [t[j]!, ws[i]!] as const).filter(([x]) => (x > 0 ? 1 : x < 0 ? -1 : 0) === sign);
    return agreeing.length === 0 ? 0 : agreeing.reduce((s, [x, w]) => s + w * x, 0) / agreeing.length;
  });
}

interface Options {
  density?: number;
  sign?: "total" | "frequency";
  seed?: number;
}

/** PEFT's A/B-wise merges: prune/combine A's with sign(c) sqrt|c| and B's with sqrt|c|, then delta W = B' A'. */
function abWiseReference(method: MergeMethod, inputs: readonly MergeInput[], o: Options): Map<string, Matrix> {
  const density = o.density ?? 0.5;
  const out = new Map<string, Matrix>();
  for (const m0 of inputs[0]!.adapter.modules) {
    const key = moduleKey(m0.layer, m0.module);
    const modules = inputs.map((i) => i.adapter.modules.find((m) => moduleKey(m.layer, m.module) === key)!);
    const cs = modules.map((m, i) => coefficient(inputs[i]!, m));
    const side = (tensors: Matrix[], weights: number[], s: 0 | 1): Matrix => {
      const pruned = tensors.map((t, i) => {
        if (method === "linear") return t;
        if (method === "ties" || method === "magnitude_prune") return topK(t, density);
        return bernoulli(t, density, o.seed ?? 0, i, s, m0.layer, MODULE_ID[m0.module]);
      });
      if (method === "ties" || method === "dare_ties") return electAndAverage(pruned, weights, o.sign ?? "total");
      return pruned[0]!.map((_, j) => pruned.reduce((acc, t, i) => acc + weights[i]! * t[j]!, 0));
    };
    const a = side(
      modules.map((m) => Float64Array.from(materializeA(m))),
      cs.map((c) => (c < 0 ? -Math.sqrt(-c) : Math.sqrt(c))),
      0,
    );
    const b = side(
      modules.map((m) => Float64Array.from(m.b)),
      cs.map((c) => Math.sqrt(Math.abs(c))),
      1,
    );
    out.set(key, product(b, a, m0.outFeatures, m0.rank, m0.inFeatures));
  }
  return out;
}

/** sum_i c_i B_i A_i per module, over the inputs that have it. */
function exactSum(inputs: readonly MergeInput[]): Map<string, Matrix> {
  const out = new Map<string, Matrix>();
  for (const input of inputs) {
    for (const m of input.adapter.modules) {
      const key = moduleKey(m.layer, m.module);
      const d = product(m.b, materializeA(m), m.outFeatures, m.rank, m.inFeatures);
      const c = coefficient(input, m);
      const acc = out.get(key) ?? new Float64Array(d.length);
      d.forEach((x, i) => (acc[i]! += c * x));
      out.set(key, acc);
    }
  }
  return out;
}

/** Eigen-decomposition of a symmetric matrix by cyclic two-sided Jacobi: eigenvalues and column eigenvectors. */
function symmetricEigen(s: Matrix, n: number): { values: number[]; vectors: Matrix } {
  const a = Float64Array.from(s);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - sn * akq;
          a[k * n + q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - sn * aqk;
          a[q * n + k] = sn * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - sn * vkq;
          v[k * n + q] = sn * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Array.from({ length: n }, (_, i) => a[i * n + i]!), vectors: v };
}

/** Best rank-k approximation of W [m, n]: W V_k V_k^T with V_k the top-k eigenvectors of W^T W. */
function rankKApproximation(w: Matrix, m: number, n: number, k: number): Matrix {
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let r = 0; r < m; r++) gram[i * n + j]! += w[r * n + i]! * w[r * n + j]!;
  const { values, vectors } = symmetricEigen(gram, n);
  const top = values
    .map((value, i) => [value, i] as const)
    .sort((x, y) => y[0] - x[0])
    .slice(0, k)
    .map(([, i]) => i);
  const projector = new Float64Array(n * n);
  for (const c of top)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) projector[i * n + j]! += vectors[i * n + c]! * vectors[j * n + c]!;
  return product(w, projector, m, n, n);
}

function svdReference(inputs: readonly MergeInput[], rank: number): Map<string, Matrix> {
  const out = new Map<string, Matrix>();
  const shapes = new Map(inputs.flatMap((i) => i.adapter.modules.map((m) => [moduleKey(m.layer, m.module), m] as const)));
  for (const [key, w] of exactSum(inputs)) {
    const m = shapes.get(key)!;
    out.set(key, rankKApproximation(w, m.outFeatures, m.inFeatures, rank));
  }
  return out;
}

// ---- test adapters ----------------------------------------------------------------------------------------

function randomAdapter(
  seed: number,
  options: { rank?: number; aSeed?: number; sparsity?: number; rslora?: boolean; layers?: number } = {},
): Adapter {
  const random = rng(seed);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < (options.layers ?? 2); layer++) {
    for (const module of TARGET_MODULES) {
      const down = module === "down_proj";
      const rank = options.rank ?? 4;
      modules.push(
        randomModule({
          layer,
          module,
          random,
          rank,
          alpha: 1 + Math.floor(random() * 16),
          inFeatures: down ? 20 : 12,
          outFeatures: down ? 12 : module === "k_proj" ? 6 : module === "gate_proj" || module === "up_proj" ? 20 : 12,
          ...(options.aSeed !== undefined ? { seed: options.aSeed } : {}),
          ...(options.sparsity !== undefined ? { sparsity: options.sparsity } : {}),
        }),
      );
    }
  }
  return makeAdapter(modules, { useRslora: options.rslora ?? false });
}

/** Three kinds of input sets, each with a negative weight: plain LoRA, LoRI-S (sparse B) with own seeds, LoRI-S sharing one A. */
const INPUT_SETS: ReadonlyArray<readonly [string, () => MergeInput[]]> = [
  [
    "dense LoRA, one rsLoRA",
    () => [
      { adapter: randomAdapter(1), weight: 0.7, name: "a" },
      { adapter: randomAdapter(2, { rslora: true }), weight: -1.3, name: "b" },
      { adapter: randomAdapter(3), weight: 0.4, name: "c" },
    ],
  ],
  [
    "LoRI-S, 90 % sparse B, own seeds",
    () => [
      { adapter: randomAdapter(4, { aSeed: 11, sparsity: 0.9 }), weight: 0.5, name: "a" },
      { adapter: randomAdapter(5, { aSeed: 12, sparsity: 0.9 }), weight: -0.8, name: "b" },
    ],
  ],
  [
    "LoRI-S sharing one seeded A",
    () => [
      { adapter: randomAdapter(6, { aSeed: 21, sparsity: 0.8 }), weight: -0.6, name: "a" },
      { adapter: randomAdapter(7, { aSeed: 21, sparsity: 0.8 }), weight: 1.1, name: "b" },
      { adapter: randomAdapter(8, { aSeed: 21, sparsity: 0.8 }), weight: 0.3, name: "c" },
    ],
  ],
];

const AB_WISE_CASES: ReadonlyArray<readonly [MergeMethod, MergeParameters, Options]> = [
  ["linear", {}, {}],
  ["magnitude_prune", {}, {}],
  ["magnitude_prune", { density: 0.2 }, { density: 0.2 }],
  ["ties", {}, {}],
  ["ties", { density: 0.7, majoritySignMethod: "frequency" }, { density: 0.7, sign: "frequency" }],
  ["dare_linear", { seed: 5 }, { seed: 5 }],
  ["dare_linear", { density: 0.3, seed: 2 ** 40 + 3 }, { density: 0.3, seed: 2 ** 40 + 3 }],
  ["dare_ties", {}, {}],
  ["dare_ties", { density: 0.6, majoritySignMethod: "frequency", seed: 9 }, { density: 0.6, sign: "frequency", seed: 9 }],
  ["ties", { density: 1 }, { density: 1 }],
];

describe("A/B-wise merges (linear, ties, dare_linear, dare_ties, magnitude_prune) equal PEFT's formulas", () => {
  for (const [label, make] of INPUT_SETS) {
    for (const [method, parameters, options] of AB_WISE_CASES) {
      it(`${method} ${JSON.stringify(parameters)} on ${label}: max relative error of delta W <= ${TOLERANCE}`, () => {
        const inputs = make();
        const merged = mergeAdapters(inputs, method, parameters);
        expect(maxRelativeError(mergedDeltas(merged), abWiseReference(method, inputs, options))).toBeLessThanOrEqual(TOLERANCE);
        const rank = inputs[0]!.adapter.modules[0]!.rank;
        expect(merged.modules.every((m) => m.rank === rank)).toBe(true);
        if (method !== "linear") expect(merged.modules.every((m) => m.a.kind === "dense")).toBe(true);
      });
    }
  }

  it("pruning really prunes: magnitude_prune at density 0.25 keeps int(0.25 * numel) entries of each dense factor", () => {
    const input = { adapter: randomAdapter(30), weight: 1 };
    const merged = mergeAdapters([input], "magnitude_prune", { density: 0.25 });
    for (const m of merged.modules) {
      const nonZeroA = Array.from(materializeA(m)).filter((x) => x !== 0).length;
      expect(nonZeroA).toBe(Math.floor(0.25 * m.rank * m.inFeatures));
    }
  });

  it("linear takes negative weights with the sign on A: linear(a: -1) negates linear(a: 1)", () => {
    const adapter = randomAdapter(31);
    const plus = mergedDeltas(mergeAdapters([{ adapter, weight: 1 }], "linear"));
    const minus = mergedDeltas(mergeAdapters([{ adapter, weight: -1 }], "linear"));
    for (const [key, d] of plus) expect(maxRelativeError(new Map([[key, minus.get(key)!.map((x) => -x)]]), new Map([[key, d]]))).toBe(0);
  });

  it("keeps LoRI-S masks as their union and records the method and its parameters in the lineage", () => {
    const [, make] = INPUT_SETS[1]!;
    const merged = mergeAdapters(make(), "dare_ties", { density: 0.4, seed: 3 });
    expect(merged.modules.every((m) => m.mask !== undefined)).toBe(true);
    expect(merged.config.lori?.variant).toBe("lora");
    expect(merged.config.lori?.lineage[0]).toMatchObject({
      op: "merge",
      method: "dare_ties",
      density: 0.4,
      majority_sign_method: "total",
      seed: 3,
      inputs: [
        { name: "a", weight: 0.5 },
        { name: "b", weight: -0.8 },
      ],
    });
  });
});

describe("dare is reproducible from its seed", () => {
  const bytes = (adapter: Adapter) =>
    adapter.modules.map((m) => [Buffer.from(materializeA(m).buffer).toString("hex"), Buffer.from(m.b.buffer).toString("hex")]);

  for (const method of ["dare_linear", "dare_ties"] as const) {
    it(`${method}: the same seed gives the same bits, another seed other bits, no seed means seed 0`, () => {
      const [, make] = INPUT_SETS[0]!;
      const first = mergeAdapters(make(), method, { seed: 1234 });
      const again = mergeAdapters(make(), method, { seed: 1234 });
      const other = mergeAdapters(make(), method, { seed: 1235 });
      expect(bytes(again)).toEqual(bytes(first));
      expect(bytes(other)).not.toEqual(bytes(first));
      expect(bytes(mergeAdapters(make(), method))).toEqual(bytes(mergeAdapters(make(), method, { seed: 0 })));
    });
  }

  it("keeps each entry with probability density (200,000 draws within 5 standard deviations)", () => {
    for (const density of [0.1, 0.5, 0.9]) {
      const draws = 200_000;
      let kept = 0;
      for (let i = 0; i < draws; i++) if (dareKeeps({ seed: 77, layer: 3, moduleId: 2, input: 1, side: "B" }, i, density)) kept++;
      const sigma = Math.sqrt((density * (1 - density)) / draws);
      expect(Math.abs(kept / draws - density)).toBeLessThan(5 * sigma);
    }
  });
});

describe("svd merge: the best rank-k approximation of sum_i c_i B_i A_i", () => {
  for (const [label, make] of INPUT_SETS) {
    it(`on ${label}, default rank (largest input rank) and rank 2: max relative error <= ${TOLERANCE}`, () => {
      const inputs = make();
      const merged = mergeAdapters(inputs, "svd");
      expect(merged.modules.every((m) => m.rank === 4 && m.alpha === 4 && m.a.kind === "dense" && m.mask === undefined)).toBe(true);
      expect(maxRelativeError(mergedDeltas(merged), svdReference(inputs, 4))).toBeLessThanOrEqual(TOLERANCE);
      const two = mergeAdapters(inputs, "svd", { rank: 2 });
      expect(maxRelativeError(mergedDeltas(two), svdReference(inputs, 2))).toBeLessThanOrEqual(TOLERANCE);
      expect(two.config.lori?.lineage[0]).toMatchObject({ op: "merge", method: "svd", rank: 2 });
    });
  }

  it("takes unequal ranks and modules only some inputs have; a rank covering every input is exact", () => {
    const inputs = [
      { adapter: randomAdapter(40, { rank: 2 }), weight: 0.9 },
      { adapter: randomAdapter(41, { rank: 3, layers: 1 }), weight: -0.5 },
    ];
    const merged = mergeAdapters(inputs, "svd", { rank: 5 });
    expect(merged.modules).toHaveLength(14);
    expect(maxRelativeError(mergedDeltas(merged), exactSum(inputs))).toBeLessThanOrEqual(TOLERANCE);
    // Default rank = the largest input rank (3): truncation of a rank-5 sum.
    expect(maxRelativeError(mergedDeltas(mergeAdapters(inputs, "svd")), svdReference(inputs, 3))).toBeLessThanOrEqual(TOLERANCE);
  });

  it("truncates a larger module (64 x 128, three rank-8 inputs) to rank 8", () => {
    const big = (seed: number) =>
      makeAdapter([
        randomModule({ random: rng(seed), rank: 8, alpha: 16, outFeatures: 64, inFeatures: 128, seed: 50 + seed, sparsity: 0.9 }),
      ]);
    const inputs = [
      { adapter: big(1), weight: 0.4 },
      { adapter: big(2), weight: -0.4 },
      { adapter: big(3), weight: 0.4 },
    ];
    expect(maxRelativeError(mergedDeltas(mergeAdapters(inputs, "svd")), svdReference(inputs, 8))).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe("refused merges say why, naming the parameter", () => {
  const parameterError = (run: () => unknown): MergeParameterError => {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(MergeParameterError);
      return error as MergeParameterError;
    }
    throw new Error("expected the merge to be refused");
  };
  const inputs = () => [
    { adapter: randomAdapter(60), weight: 1 },
    { adapter: randomAdapter(61), weight: 1 },
  ];

  it("unequal ranks for linear, ties, dare_linear, dare_ties and magnitude_prune", () => {
    for (const method of ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] as const) {
      const unequal = [
        { adapter: randomAdapter(62, { rank: 3 }), weight: 1 },
        { adapter: randomAdapter(63, { rank: 4 }), weight: 1 },
      ];
      expect(() => mergeAdapters(unequal, method)).toThrow(LoraError);
      expect(() => mergeAdapters(unequal, method)).toThrow(/needs equal ranks .*ranks 3, 4/);
    }
  });

  it("density out of (0, 1], or given to a method that does not prune", () => {
    for (const density of [0, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = parameterError(() => mergeAdapters(inputs(), "ties", { density }));
      expect(error.parameter).toBe("density");
      expect(error.message).toMatch(/0 < D <= 1/);
    }
    for (const method of ["cat", "linear", "svd"] as const) {
      expect(parameterError(() => mergeAdapters(inputs(), method, { density: 0.5 })).message).toMatch(
        new RegExp(`density applies only to ties, dare_linear, dare_ties and magnitude_prune, not to ${method}`),
      );
    }
  });

  it("majority sign, seed and rank given to methods that do not use them; svd rank above a module's size", () => {
    for (const method of ["cat", "linear", "dare_linear", "magnitude_prune", "svd"] as const) {
      expect(parameterError(() => mergeAdapters(inputs(), method, { majoritySignMethod: "total" })).parameter).toBe("majoritySignMethod");
    }
    expect(parameterError(() => mergeAdapters(inputs(), "ties", { seed: 1 })).message).toMatch(
      /seed applies only to dare_linear and dare_ties/,
    );
    expect(parameterError(() => mergeAdapters(inputs(), "ties", { rank: 2 })).message).toMatch(/rank applies only to svd/);
    expect(parameterError(() => mergeAdapters(inputs(), "dare_ties", { seed: -1 })).parameter).toBe("seed");
    expect(parameterError(() => mergeAdapters(inputs(), "svd", { rank: 0 })).parameter).toBe("rank");
    // k_proj is 6 x 12: rank 7 cannot exist there.
    expect(parameterError(() => mergeAdapters(inputs(), "svd", { rank: 7 })).message).toMatch(
      /rank 7 exceeds layer 0 k_proj's smaller dimension \(6x12\)/,
    );
  });
});
