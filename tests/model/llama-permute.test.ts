import { describe, expect, it } from "vitest";
import { permuteRowsForRope, unpermuteRowsForRope } from "../../src/model/llama-permute.js";
import { SeededRandom } from "../../src/model/seeded-random.js";

/** numpy: w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols), spelled out. */
function numpyStylePermute(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const half = rows / nHead / 2;
  const source = (h: number, i: number, j: number, c: number) => w[((h * 2 + i) * half + j) * cols + c]!;
  const out = new Float32Array(w.length);
  let flat = 0;
  // Iterate the swapped array [h][j][i][c] in C order: that is the reshaped result.
  for (let h = 0; h < nHead; h++)
    for (let j = 0; j < half; j++) for (let i = 0; i < 2; i++) for (let c = 0; c < cols; c++) out[flat++] = source(h, i, j, c);
  return out;
}

/** Rotary embedding on one head vector, in either pairing convention. */
function rope(x: Float64Array, pos: number, style: "halves" | "adjacent", theta = 10_000): Float64Array {
  const d = x.length;
  const out = new Float64Array(d);
  for (let j = 0; j < d / 2; j++) {
    const angle = pos * theta ** ((-2 * j) / d);
    const [a, b] = style === "halves" ? [j, j + d / 2] : [2 * j, 2 * j + 1];
    out[a] = x[a]! * Math.cos(angle) - x[b]! * Math.sin(angle);
    out[b] = x[b]! * Math.cos(angle) + x[a]! * Math.sin(angle);
  }
  return out;
}

function matVec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  return Float64Array.from({ length: rows }, (_, r) => x.reduce((sum, v, c) => sum + w[r * cols + c]! * v, 0));
}

describe("permuteRowsForRope", () => {
  const random = new SeededRandom(11);
  const shapes: Array<[rows: number, cols: number, nHead: number]> = [
    [8, 3, 1],
    [8, 3, 2],
    [64, 5, 4],
    [32, 64, 4],
    [12, 1, 3], // a bias-like vector
  ];

  it("matches convert_hf_to_gguf.py's reshape/swapaxes permutation", () => {
    for (const [rows, cols, nHead] of shapes) {
      const w = random.fillUniform(new Float32Array(rows * cols), 1);
      expect(permuteRowsForRope(w, rows, cols, nHead)).toEqual(numpyStylePermute(w, rows, cols, nHead));
    }
  });

  it("is undone by unpermuteRowsForRope and only moves whole rows", () => {
    for (const [rows, cols, nHead] of shapes) {
      const w = random.fillUniform(new Float32Array(rows * cols), 1);
      const permuted = permuteRowsForRope(w, rows, cols, nHead);
      expect(unpermuteRowsForRope(permuted, rows, cols, nHead)).toEqual(w);
      expect(Array.from(permuted).sort()).toEqual(Array.from(w).sort());
    }
  });

  it("turns HF rotate_half RoPE into llama.cpp's adjacent-pair RoPE, keeping attention scores", () => {
    const [d, headSize, nHead] = [16, 8, 2];
    const wq = random.fillUniform(new Float32Array(d * d), 1);
    const wk = random.fillUniform(new Float32Array(d * d), 1);
    const x = Float64Array.from(random.fillUniform(new Float32Array(d), 1));
    const [pq, pk] = [5, 2];
    const heads = (v: Float64Array) => Array.from({ length: nHead }, (_, h) => v.slice(h * headSize, (h + 1) * headSize));
    const qHf = heads(matVec(wq, x, d)).map((h) => rope(h, pq, "halves"));
    const kHf = heads(matVec(wk, x, d)).map((h) => rope(h, pk, "halves"));
    const qGguf = heads(matVec(permuteRowsForRope(wq, d, d, nHead), x, d)).map((h) => rope(h, pq, "adjacent"));
    const kGguf = heads(matVec(permuteRowsForRope(wk, d, d, nHead), x, d)).map((h) => rope(h, pk, "adjacent"));
    for (let h = 0; h < nHead; h++) {
      const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);
      expect(dot(qGguf[h]!, kGguf[h]!)).toBeCloseTo(dot(qHf[h]!, kHf[h]!), 10);
      // Element-wise: the rotated GGUF head is the permuted rotated HF head.
      const permutedHf = permuteRowsForRope(Float32Array.from(qHf[h]!), headSize, 1, 1);
      qGguf[h]!.forEach((v, i) => expect(v).toBeCloseTo(permutedHf[i]!, 5));
    }
  });

  it("rejects shapes that do not split into heads of even size", () => {
    expect(() => permuteRowsForRope(new Float32Array(12), 6, 2, 2)).toThrow(/even size/);
    expect(() => permuteRowsForRope(new Float32Array(12), 4, 2, 2)).toThrow(/expected 4x2/);
  });
});
