import { describe, expect, it } from "vitest";
import { makeAdapter, materializeA, type LoraModule } from "../../src/lora/adapter.js";
import { analyzeInterference, crossTermNorms, principalAngles, singularValues } from "../../src/lora/interference.js";
import { packMask } from "../../src/lora/mask.js";
import { randomModule, rng } from "./helpers.js";

const basisRows = (rows: number[], inF: number) => {
  const a = new Float32Array(rows.length * inF);
  rows.forEach((axis, r) => (a[r * inF + axis] = 1));
  return a;
};

describe("singularValues (one-sided Jacobi)", () => {
  it("matches known decompositions", () => {
    const sv = singularValues([3, 0, 4, 5], 2, 2);
    expect(sv[0]).toBeCloseTo(3 * Math.sqrt(5), 12);
    expect(sv[1]).toBeCloseTo(Math.sqrt(5), 12);
    expect(singularValues([0, 2, 0, 0, 0, 3], 2, 3)).toEqual([3, 2]);
  });

  it("preserves the Frobenius norm and the determinant's magnitude of random matrices", () => {
    const random = rng(4);
    for (let t = 0; t < 20; t++) {
      const m = Array.from({ length: 9 }, () => random() * 2 - 1);
      const sv = singularValues(m, 3, 3);
      const det =
        m[0]! * (m[4]! * m[8]! - m[5]! * m[7]!) - m[1]! * (m[3]! * m[8]! - m[5]! * m[6]!) + m[2]! * (m[3]! * m[7]! - m[4]! * m[6]!);
      expect(sv.reduce((x, s) => x + s * s, 0)).toBeCloseTo(
        m.reduce((x, v) => x + v * v, 0),
        10,
      );
      expect(sv.reduce((x, s) => x * s, 1)).toBeCloseTo(Math.abs(det), 10);
    }
  });
});

describe("principal angles", () => {
  it("are 0 for identical A and for a different basis of the same row space", () => {
    const a = materializeA(randomModule({ seed: 3, rank: 6, inFeatures: 64 }));
    for (const angle of principalAngles(a, 6, a, 6, 64)) expect(angle).toBeLessThan(1e-4);
    const mixed = new Float32Array(6 * 64);
    for (let r = 0; r < 6; r++) for (let j = 0; j < 64; j++) mixed[r * 64 + j] = a[r * 64 + j]! + 2 * a[((r + 1) % 6) * 64 + j]!;
    for (const angle of principalAngles(a, 6, mixed, 6, 64)) expect(angle).toBeLessThan(1e-3);
  });

  it("are 90 degrees for orthogonal subspaces", () => {
    expect(principalAngles(basisRows([0, 1, 2], 8), 3, basisRows([3, 4], 8), 2, 8)).toEqual([90, 90]);
  });

  it("recover a constructed angle, and mix 0 and 90 for partially shared spaces", () => {
    const theta = (35 * Math.PI) / 180;
    const a2 = new Float32Array([Math.cos(theta), Math.sin(theta), 0, 0]);
    expect(principalAngles(basisRows([0], 4), 1, a2, 1, 4)[0]).toBeCloseTo(35, 4);
    const angles = principalAngles(basisRows([0, 1], 5), 2, basisRows([1, 2], 5), 2, 5);
    expect(angles[0]).toBeCloseTo(0, 6);
    expect(angles[1]).toBeCloseTo(90, 6);
  });

  it("are near 90 degrees for independently seeded random A in high dimension", () => {
    const a1 = materializeA(randomModule({ seed: 1, rank: 4, inFeatures: 4096 }));
    const a2 = materializeA(randomModule({ seed: 2, rank: 4, inFeatures: 4096 }));
    for (const angle of principalAngles(a1, 4, a2, 4, 4096)) expect(angle).toBeGreaterThan(80);
  });
});

/** Dense float64 Frobenius norms of the cross term and the direct sum, for checking the Gram-matrix path. */
function denseNorms(m1: LoraModule, c1: number, m2: LoraModule, c2: number) {
  const [a1, a2] = [materializeA(m1), materializeA(m2)];
  const r = m1.rank;
  const ba = (b: Float32Array, a: Float32Array, i: number, j: number) => {
    let s = 0;
    for (let k = 0; k < r; k++) s += b[i * r + k]! * a[k * m1.inFeatures + j]!;
    return s;
  };
  let cross = 0;
  let direct = 0;
  for (let i = 0; i < m1.outFeatures; i++) {
    for (let j = 0; j < m1.inFeatures; j++) {
      cross += (Math.sqrt(c1 * c2) * (ba(m1.b, a2, i, j) + ba(m2.b, a1, i, j))) ** 2;
      direct += (c1 * ba(m1.b, a1, i, j) + c2 * ba(m2.b, a2, i, j)) ** 2;
    }
  }
  return { cross, direct };
}

describe("linear-merge cross terms", () => {
  it("Gram-matrix norms equal the dense computation", () => {
    const random = rng(9);
    for (let t = 0; t < 5; t++) {
      const m1 = randomModule({ random, rank: 3, inFeatures: 9, outFeatures: 7 });
      const m2 = randomModule({ random, rank: 3, inFeatures: 9, outFeatures: 7, seed: t });
      const got = crossTermNorms(m1, 0.7, m2, 1.9)!;
      const want = denseNorms(m1, 0.7, m2, 1.9);
      expect(got.cross).toBeCloseTo(want.cross, 9);
      expect(got.direct).toBeCloseTo(want.direct, 9);
    }
  });

  it("are undefined for unequal ranks or weights of opposite sign", () => {
    expect(crossTermNorms(randomModule({ rank: 2 }), 1, randomModule({ rank: 3 }), 1)).toBeNull();
    expect(crossTermNorms(randomModule(), 1, randomModule(), -1)).toBeNull();
  });
});

describe("analyzeInterference", () => {
  it("reports zero overlap for disjoint masks, full overlap for identical ones, and ratio 1 for one adapter with itself", () => {
    const base = randomModule({ rank: 2, inFeatures: 6, outFeatures: 4, seed: 5 });
    const keep = (parity: number) => Array.from({ length: 8 }, (_, i) => i % 2 === parity);
    const withMask = (parity: number): LoraModule => ({
      ...base,
      b: base.b.map((v, i) => (keep(parity)[i] ? v : 0)),
      mask: packMask(keep(parity)),
    });
    const even = makeAdapter([withMask(0)]);
    const odd = makeAdapter([withMask(1)]);
    const disjoint = analyzeInterference(even, odd);
    expect(disjoint.globalJaccard).toBe(0);
    expect(disjoint.modules[0]!.jaccard).toBe(0);
    const same = analyzeInterference(even, even);
    expect(same.globalJaccard).toBe(1);
    expect(same.modules[0]!.anglesDeg.every((a) => a < 1e-4)).toBe(true);
    // With itself: cross = 2 c BA = direct, so the ratio is exactly 1.
    expect(same.globalCrossTermRatio).toBeCloseTo(1, 10);
  });

  it("finds cross terms as large as the direct terms for orthonormal, mutually orthogonal A", () => {
    const inF = 8;
    const m1: LoraModule = {
      ...randomModule({ rank: 2, inFeatures: inF, outFeatures: 4 }),
      a: { kind: "dense", data: basisRows([0, 1], inF) },
    };
    const m2: LoraModule = {
      ...randomModule({ rank: 2, inFeatures: inF, outFeatures: 4, random: rng(2) }),
      a: { kind: "dense", data: basisRows([2, 3], inF) },
    };
    const report = analyzeInterference(makeAdapter([m1]), makeAdapter([m2]));
    expect(report.modules[0]!.anglesDeg).toEqual([90, 90]);
    // Orthonormal rows, A1 ⟂ A2: ||B1 A2 + B2 A1||^2 = ||B1||^2 + ||B2||^2 = ||B1 A1 + B2 A2||^2, so the ratio
    // is exactly 1: orthogonal A subspaces do not shrink a linear merge's cross terms.
    expect(report.modules[0]!.crossTermRatio).toBeCloseTo(1, 10);
  });
});
