import { describe, expect, it } from "vitest";
import { makeAdapter, materializeA, moduleKey, moduleScale, type Adapter, type LoraModule } from "../../src/lora/adapter.js";
import { computeBaseFingerprint } from "../../src/lora/base-fingerprint.js";
import { maskPopcount } from "../../src/lora/mask.js";
import { mergeCat, mergeLinear, type MergeInput } from "../../src/lora/merge.js";
import { TARGET_MODULES } from "../../src/lora/target-modules.js";
import { randomModule, rng } from "./helpers.js";

/** Naive float64 B A for one module. */
function product(b: ArrayLike<number>, a: ArrayLike<number>, out: number, rank: number, inF: number): Float64Array {
  const w = new Float64Array(out * inF);
  for (let i = 0; i < out; i++)
    for (let k = 0; k < rank; k++) for (let j = 0; j < inF; j++) w[i * inF + j]! += b[i * rank + k]! * a[k * inF + j]!;
  return w;
}

/** The dense delta W = scale * B A of every module of an adapter, in float64. */
function deltas(adapter: Adapter): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const m of adapter.modules) {
    const s = moduleScale(m, adapter.config.use_rslora);
    out.set(
      moduleKey(m.layer, m.module),
      product(m.b, materializeA(m), m.outFeatures, m.rank, m.inFeatures).map((x) => x * s),
    );
  }
  return out;
}

/** Reference for cat: sum_i w_i s_i B_i A_i, computed naively. */
function catReference(inputs: readonly MergeInput[]): Map<string, Float64Array> {
  const total = new Map<string, Float64Array>();
  for (const { adapter, weight } of inputs) {
    for (const [key, d] of deltas(adapter)) {
      const acc = total.get(key) ?? new Float64Array(d.length);
      d.forEach((x, i) => (acc[i]! += weight * x));
      total.set(key, acc);
    }
  }
  return total;
}

/** Reference for linear: (sum sqrt(c_i) B_i)(sum sqrt(c_i) A_i), naively. */
function linearReference(inputs: readonly MergeInput[]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const m0 of inputs[0]!.adapter.modules) {
    const key = moduleKey(m0.layer, m0.module);
    const ms = inputs.map((i) => [i, i.adapter.modules.find((m) => moduleKey(m.layer, m.module) === key)!] as const);
    const b = new Float64Array(m0.b.length);
    const a = new Float64Array(m0.rank * m0.inFeatures);
    for (const [input, m] of ms) {
      const root = Math.sqrt(input.weight * moduleScale(m, input.adapter.config.use_rslora));
      m.b.forEach((x, i) => (b[i]! += root * x));
      materializeA(m).forEach((x, i) => (a[i]! += root * x));
    }
    out.set(key, product(b, a, m0.outFeatures, m0.rank, m0.inFeatures));
  }
  return out;
}

/** Relative Frobenius error; float32 storage of merged A/B allows ~1e-6, we assert 1e-5. */
function expectClose(actual: Map<string, Float64Array>, expected: Map<string, Float64Array>, tolerance = 1e-5): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [key, e] of expected) {
    const a = actual.get(key)!;
    let diff = 0;
    let norm = 0;
    e.forEach((x, i) => {
      diff += (a[i]! - x) ** 2;
      norm += x * x;
    });
    expect(Math.sqrt(diff), key).toBeLessThanOrEqual(tolerance * Math.sqrt(norm) + 1e-12);
  }
}

function randomAdapter(
  seed: number,
  options: { rank?: number; aSeed?: number; sparsity?: number; rslora?: boolean; layers?: number } = {},
): Adapter {
  const random = rng(seed);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < (options.layers ?? 2); layer++) {
    for (const module of TARGET_MODULES) {
      const down = module === "down_proj";
      modules.push(
        randomModule({
          layer,
          module,
          random,
          rank: options.rank ?? 2 + Math.floor(random() * 4),
          alpha: 1 + Math.floor(random() * 16),
          inFeatures: down ? 20 : 12,
          outFeatures: down ? 12 : module === "k_proj" ? 6 : module.endsWith("up_proj") || module === "gate_proj" ? 20 : 12,
          ...(options.aSeed !== undefined ? { seed: options.aSeed } : {}),
          ...(options.sparsity !== undefined ? { sparsity: options.sparsity } : {}),
        }),
      );
    }
  }
  return makeAdapter(modules, { useRslora: options.rslora ?? false });
}

describe("mergeCat", () => {
  it("equals sum_i w_i s_i B_i A_i for random adapters, ranks and real weights (including negative)", () => {
    for (let trial = 0; trial < 5; trial++) {
      const random = rng(100 + trial);
      const inputs = [0, 1, 2].map((i) => ({
        adapter: randomAdapter(trial * 10 + i, { rslora: i === 1 }),
        weight: random() * 4 - 2,
      }));
      const merged = mergeCat(inputs);
      expectClose(deltas(merged), catReference(inputs));
      for (const m of merged.modules) {
        expect(m.alpha).toBe(m.rank);
        const ranks = inputs.map((i) => i.adapter.modules.find((x) => x.layer === m.layer && x.module === m.module)!.rank);
        expect(m.rank).toBe(ranks.reduce((x, y) => x + y, 0));
      }
      expect(merged.config.use_rslora).toBe(false);
    }
  });

  it("records per-module ranks in rank_pattern", () => {
    const merged = mergeCat([
      { adapter: randomAdapter(1, { rank: 2 }), weight: 1 },
      { adapter: makeAdapter([randomModule({ layer: 0, module: "q_proj", rank: 3, outFeatures: 12 })]), weight: 1 },
    ]);
    expect(merged.config.r).toBe(2);
    expect(merged.config.rank_pattern).toEqual({ "model.layers.0.self_attn.q_proj": 5 });
  });

  it("keeps modules only some adapters have, and concatenates masks column-wise", () => {
    const a = randomAdapter(3, { sparsity: 0.7 });
    const b = makeAdapter([randomModule({ layer: 0, module: "q_proj", sparsity: 0.5, outFeatures: 12, inFeatures: 12 })]);
    const inputs = [
      { adapter: a, weight: 0.4 },
      { adapter: b, weight: -1.5 },
    ];
    const merged = mergeCat(inputs);
    expectClose(deltas(merged), catReference(inputs));
    const q = merged.modules.find((m) => m.layer === 0 && m.module === "q_proj")!;
    const kept = [a, b]
      .map((x) => x.modules.find((m) => m.layer === 0 && m.module === "q_proj")!)
      .map((m) => maskPopcount(m.mask!, m.b.length));
    expect(maskPopcount(q.mask!, q.b.length)).toBe(kept[0]! + kept[1]!);
  });

  it("collapses adapters sharing one seeded A to rank r: A stays seeded, B = sum c_i B_i", () => {
    const inputs = [
      { adapter: randomAdapter(5, { rank: 4, aSeed: 77, sparsity: 0.9 }), weight: 0.4 },
      { adapter: randomAdapter(6, { rank: 4, aSeed: 77, sparsity: 0.9 }), weight: 0.4 },
      { adapter: randomAdapter(7, { rank: 4, aSeed: 77, sparsity: 0.9 }), weight: -0.3 },
    ];
    const merged = mergeCat(inputs);
    expectClose(deltas(merged), catReference(inputs));
    for (const m of merged.modules) {
      expect(m.rank).toBe(4);
      expect(m.a).toEqual({ kind: "seeded", seed: 77 });
      expect(m.mask).toBeDefined();
    }
    expect(merged.config.lori?.a_init?.seed).toBe(77);
  });

  it("stacks A when the seeds differ", () => {
    const merged = mergeCat([
      { adapter: randomAdapter(5, { rank: 4, aSeed: 1 }), weight: 1 },
      { adapter: randomAdapter(6, { rank: 4, aSeed: 2 }), weight: 1 },
    ]);
    expect(merged.modules.every((m) => m.rank === 8 && m.a.kind === "dense")).toBe(true);
  });

  it("records lineage and refuses adapters for different bases", () => {
    const fp = (arch: string) => computeBaseFingerprint(arch, [{ name: "x", shape: [1] }]);
    const forBase = (arch: string) => makeAdapter([randomModule()], { baseFingerprint: fp(arch) });
    const merged = mergeCat([
      { adapter: forBase("llama"), weight: 0.5, name: "math" },
      { adapter: forBase("llama"), weight: 0.5, name: "code" },
    ]);
    expect(merged.config.lori?.lineage[0]).toMatchObject({ op: "merge", method: "cat", inputs: [{ name: "math" }, { name: "code" }] });
    expect(merged.config.lori?.base_fingerprint?.sha256).toBe(fp("llama").sha256);
    expect(() =>
      mergeCat([
        { adapter: forBase("llama"), weight: 1 },
        { adapter: forBase("qwen2"), weight: 1 },
      ]),
    ).toThrow(/different base models/);
    const wide = makeAdapter([randomModule({ inFeatures: 13 })]);
    expect(() =>
      mergeCat([
        { adapter: forBase("llama"), weight: 1 },
        { adapter: wide, weight: 1 },
      ]),
    ).toThrow(/same base/);
  });
});

describe("mergeLinear", () => {
  it("equals (sum sqrt(c_i) B_i)(sum sqrt(c_i) A_i) for equal ranks and positive weights", () => {
    const inputs = [
      { adapter: randomAdapter(11, { rank: 3 }), weight: 0.5 },
      { adapter: randomAdapter(12, { rank: 3, rslora: true }), weight: 1.5 },
    ];
    const merged = mergeLinear(inputs);
    expectClose(deltas(merged), linearReference(inputs));
    expect(merged.modules.every((m) => m.rank === 3 && m.alpha === 3)).toBe(true);
  });

  it("differs from the exact sum by the cross terms, even with one shared seeded A", () => {
    const inputs = [
      { adapter: randomAdapter(13, { rank: 3, aSeed: 9 }), weight: 0.5 },
      { adapter: randomAdapter(14, { rank: 3, aSeed: 9 }), weight: 0.5 },
    ];
    const merged = mergeLinear(inputs);
    expect(merged.modules.every((m) => m.a.kind === "seeded")).toBe(true);
    expectClose(deltas(merged), linearReference(inputs));
    const exact = catReference(inputs);
    const [key, d] = [...deltas(merged)][0]!;
    expect(Math.abs(d[0]! - exact.get(key)![0]!)).toBeGreaterThan(1e-6);
  });

  it("rejects unequal ranks and missing modules with clear errors (negative weights: merge-methods.test.ts)", () => {
    const a = randomAdapter(15, { rank: 3 });
    expect(() =>
      mergeLinear([
        { adapter: a, weight: 1 },
        { adapter: randomAdapter(16, { rank: 4 }), weight: 1 },
      ]),
    ).toThrow(/equal ranks/);
    expect(() =>
      mergeLinear([
        { adapter: a, weight: 1 },
        { adapter: randomAdapter(16, { rank: 3, layers: 1 }), weight: 1 },
      ]),
    ).toThrow(/missing from some adapters/);
    expect(() => mergeLinear([])).toThrow(/at least one adapter/);
  });
});
