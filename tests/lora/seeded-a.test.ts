import { readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { mulhi32, philox4x32, philox4x32First } from "../../src/lora/philox.js";
import { generateSeededA, newRandomSeed, seededAElement } from "../../src/lora/seeded-a.js";
import { MODULE_ID, TARGET_MODULES, type TargetModule } from "../../src/lora/target-modules.js";

/*
 * A deliberately naive BigInt Philox4x32-10 and seeded-A element, written straight from the spec, used both to
 * generate tests/fixtures/seeded-a-vectors.json (LORI_REGENERATE_FIXTURES=1) and to cross-check the fast path.
 */
const MASK32 = 0xffff_ffffn;
function referencePhilox(counter: bigint[], key: bigint[]): bigint[] {
  let [c0, c1, c2, c3] = counter as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key as [bigint, bigint];
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + 0x9e3779b9n) & MASK32;
      k1 = (k1 + 0xbb67ae85n) & MASK32;
    }
    const p0 = 0xd2511f53n * c0;
    const p1 = 0xcd9e8d57n * c2;
    [c0, c1, c2, c3] = [((p1 >> 32n) ^ c1 ^ k0) & MASK32, p1 & MASK32, ((p0 >> 32n) ^ c3 ^ k1) & MASK32, p0 & MASK32];
  }
  return [c0, c1, c2, c3];
}

function float32Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, true);
  return view.getUint32(0, true);
}

interface Vector {
  seed: number;
  layer: number;
  module: TargetModule;
  row: number;
  col: number;
  inFeatures: number;
  bits: string;
}

function referenceElement(v: Omit<Vector, "bits">): number {
  const seed = BigInt(v.seed);
  const counter = [BigInt(v.col), BigInt(v.row), BigInt(MODULE_ID[v.module]), BigInt(v.layer)];
  const x = referencePhilox(counter, [seed & MASK32, seed >> 32n])[0]!;
  const u = Number(x >> 8n) / 2 ** 24;
  return Math.fround((2 * u - 1) * (1 / Math.sqrt(v.inFeatures)));
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

/** Deterministic edge cases first, then pseudo-random spread (fixed LCG, so regeneration is reproducible). */
function fixtureInputs(): Omit<Vector, "bits">[] {
  const MAX_SEED = Number.MAX_SAFE_INTEGER;
  const edge: Omit<Vector, "bits">[] = [
    { seed: 0, layer: 0, module: "q_proj", row: 0, col: 0, inFeatures: 4096 },
    { seed: 0, layer: 0, module: "q_proj", row: 0, col: 1, inFeatures: 4096 },
    { seed: 0, layer: 0, module: "q_proj", row: 1, col: 0, inFeatures: 4096 },
    { seed: 1, layer: 0, module: "q_proj", row: 0, col: 0, inFeatures: 4096 },
    { seed: 2 ** 32 - 1, layer: 0, module: "k_proj", row: 0, col: 0, inFeatures: 4096 },
    { seed: 2 ** 32, layer: 0, module: "k_proj", row: 0, col: 0, inFeatures: 4096 },
    { seed: MAX_SEED, layer: 0, module: "v_proj", row: 0, col: 0, inFeatures: 4096 },
    { seed: MAX_SEED, layer: 31, module: "down_proj", row: 31, col: 14335, inFeatures: 14336 },
    { seed: MAX_SEED, layer: 79, module: "up_proj", row: 63, col: 8191, inFeatures: 8192 },
    { seed: 42, layer: 0, module: "o_proj", row: 0, col: 0, inFeatures: 1 },
    { seed: 42, layer: 2 ** 32 - 1, module: "gate_proj", row: 2 ** 32 - 1, col: 2 ** 32 - 1, inFeatures: 2 ** 32 - 1 },
    { seed: 42, layer: 5, module: "gate_proj", row: 511, col: 1_000_000, inFeatures: 1_048_576 },
  ];
  for (const module of TARGET_MODULES) edge.push({ seed: 12345, layer: 3, module, row: 7, col: 100, inFeatures: 4096 });
  let state = 0x2545f491;
  const next = (limit: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.floor((state / 2 ** 32) * limit);
  };
  const ins = [64, 512, 1024, 1408, 4096, 11008, 14336];
  while (edge.length < 64) {
    const inFeatures = ins[next(ins.length)]!;
    edge.push({
      seed: next(2 ** 21) * 2 ** 32 + next(2 ** 32),
      layer: next(80),
      module: TARGET_MODULES[next(7)]!,
      row: next(128),
      col: next(inFeatures),
      inFeatures,
    });
  }
  return edge;
}

const FIXTURE = new URL("../fixtures/seeded-a-vectors.json", import.meta.url);

describe("Philox4x32-10", () => {
  it("matches Random123's known-answer vectors (tests/kat_vectors)", () => {
    expect(philox4x32([0, 0, 0, 0], [0, 0]).map(hex)).toEqual(["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]);
    const ones = 0xffff_ffff;
    expect(philox4x32([ones, ones, ones, ones], [ones, ones]).map(hex)).toEqual(["0x408f276d", "0x41c83b0e", "0xa20bc7c6", "0x6d5451fd"]);
    expect(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]).map(hex)).toEqual([
      "0xd16cfe09",
      "0x94fdcceb",
      "0x5001e420",
      "0x24126ea1",
    ]);
  });

  it("the BigInt reference agrees with the same known-answer vector", () => {
    expect(referencePhilox([0n, 0n, 0n, 0n], [0n, 0n]).map((w) => hex(Number(w)))[0]).toBe("0x6627e8d5");
  });

  it("mulhi32 is exact over edge and random operands", () => {
    const operands = [0, 1, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xd2511f53, 0xcd9e8d57];
    for (let i = 0; i < 200; i++) operands.push(Math.floor(Math.random() * 2 ** 32));
    for (const a of operands) {
      for (const b of operands.slice(0, 20)) expect(mulhi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
    }
  });

  it("the allocation-free first word equals the full function's first word", () => {
    for (let i = 0; i < 100; i++) {
      const w = Array.from({ length: 6 }, () => Math.floor(Math.random() * 2 ** 32));
      const [c0, c1, c2, c3, k0, k1] = w as [number, number, number, number, number, number];
      expect(philox4x32First(c0, c1, c2, c3, k0, k1)).toBe(philox4x32([c0, c1, c2, c3], [k0, k1])[0]);
    }
  });
});

describe("seeded A", () => {
  it.runIf(process.env.LORI_REGENERATE_FIXTURES === "1")("regenerates the fixture from the BigInt reference", () => {
    const vectors = fixtureInputs().map((v) => ({ ...v, bits: hex(float32Bits(referenceElement(v))) }));
    const doc = {
      description:
        "Seeded LoRI A elements (docs/adapter-format.md, 'Seeded A'). bits = IEEE-754 float32 bit pattern of A[row, col] " +
        "for the given seed, layer, module (id: q_proj 0 .. down_proj 6) and inFeatures. Generated by a BigInt reference.",
      vectors,
    };
    writeFileSync(FIXTURE, `${JSON.stringify(doc, null, 2)}\n`);
  });

  const loadFixture = () => JSON.parse(readFileSync(FIXTURE, "utf8")) as { vectors: Vector[] };

  it("matches every fixture vector, element by element", () => {
    const fixture = loadFixture();
    expect(fixture.vectors.length).toBeGreaterThanOrEqual(64);
    for (const v of fixture.vectors) {
      const got = seededAElement(v.seed, v.layer, v.module, v.row, v.col, v.inFeatures);
      expect(hex(float32Bits(got)), JSON.stringify(v)).toBe(v.bits);
      expect(hex(float32Bits(referenceElement(v)))).toBe(v.bits);
    }
  });

  it("whole matrices from the fast path match the fixture and the BigInt reference", () => {
    const fixture = loadFixture();
    for (const v of fixture.vectors.filter((x) => x.inFeatures <= 16384 && x.row < 64)) {
      const a = generateSeededA({ seed: v.seed, layer: v.layer, module: v.module, rank: v.row + 1, inFeatures: v.inFeatures });
      expect(hex(float32Bits(a[v.row * v.inFeatures + v.col]!))).toBe(v.bits);
    }
    const a = generateSeededA({ seed: 987654321012, layer: 7, module: "up_proj", rank: 8, inFeatures: 300 });
    for (let i = 0; i < 200; i++) {
      const row = Math.floor(Math.random() * 8);
      const col = Math.floor(Math.random() * 300);
      const expected = referenceElement({ seed: 987654321012, layer: 7, module: "up_proj", row, col, inFeatures: 300 });
      expect(float32Bits(a[row * 300 + col]!)).toBe(float32Bits(expected));
    }
  });

  it("is uniform on [-1/sqrt(in), 1/sqrt(in)) with mean near 0", () => {
    const inFeatures = 1024;
    const a = generateSeededA({ seed: 7, layer: 0, module: "q_proj", rank: 32, inFeatures });
    const bound = 1 / Math.sqrt(inFeatures);
    let sum = 0;
    let sumSq = 0;
    for (const x of a) {
      expect(x).toBeGreaterThanOrEqual(-bound);
      expect(x).toBeLessThan(bound);
      sum += x;
      sumSq += x * x;
    }
    expect(Math.abs(sum / a.length)).toBeLessThan(bound * 0.02);
    // Var of U(-b, b) is b^2 / 3.
    expect(sumSq / a.length / ((bound * bound) / 3)).toBeCloseTo(1, 1);
  });

  it("different seeds, layers and modules give different matrices", () => {
    const base = { seed: 1, layer: 0, module: "q_proj" as const, rank: 4, inFeatures: 64 };
    const a = generateSeededA(base);
    expect(generateSeededA({ ...base, seed: 2 })).not.toEqual(a);
    expect(generateSeededA({ ...base, layer: 1 })).not.toEqual(a);
    expect(generateSeededA({ ...base, module: "k_proj" })).not.toEqual(a);
    expect(generateSeededA(base)).toEqual(a);
  });

  it("rejects seeds outside [0, 2^53 - 1] and zero ranks", () => {
    expect(() => generateSeededA({ seed: -1, layer: 0, module: "q_proj", rank: 1, inFeatures: 1 })).toThrow(/seed/);
    expect(() => generateSeededA({ seed: 2 ** 53, layer: 0, module: "q_proj", rank: 1, inFeatures: 1 })).toThrow(/seed/);
    expect(() => generateSeededA({ seed: 1.5, layer: 0, module: "q_proj", rank: 1, inFeatures: 1 })).toThrow(/seed/);
    expect(() => generateSeededA({ seed: 1, layer: 0, module: "q_proj", rank: 0, inFeatures: 1 })).toThrow(/rank/);
  });

  it("newRandomSeed returns JSON-safe integers that differ", () => {
    const seeds = new Set(Array.from({ length: 50 }, () => newRandomSeed()));
    expect(seeds.size).toBe(50);
    for (const s of seeds) expect(Number.isSafeInteger(s) && s >= 0).toBe(true);
  });

  it("generates an 8B-sized rank-32 A (14336 inputs) quickly", () => {
    const t0 = performance.now();
    generateSeededA({ seed: 3, layer: 0, module: "down_proj", rank: 32, inFeatures: 14336 });
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
