import { describe, expect, it } from "vitest";
import {
  float16BitsToFloat32,
  float16BitsToFloat32Array,
  float32ArrayToFloat16Bits,
  float32ToFloat16Bits,
} from "../../src/gguf/float16.js";
import { SeededRandom } from "../../src/model/seeded-random.js";

describe("float16 conversion", () => {
  it("encodes landmark values exactly", () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // largest finite half
      [65519.99, 0x7bff], // just below the rounding point to infinity
      [65520, 0x7c00], // halfway to the next power: ties to even = infinity
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even (0)
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: ties to even (2)
      [2 ** -26, 0x0000],
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and the next half: ties to even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 1+2^-10 and 1+2^-9: ties to even
    ];
    for (const [value, bits] of cases) expect(float32ToFloat16Bits(value), `value ${value}`).toBe(bits);
    expect(float32ToFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(NaN) & 0x3ff).not.toBe(0);
  });

  it("decodes every half and re-encodes it to the same bits", () => {
    const mismatches: number[] = [];
    for (let bits = 0; bits < 65536; bits++) {
      const value = float16BitsToFloat32(bits);
      const isNaNPattern = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
      const ok = Number.isNaN(value) ? isNaNPattern : float32ToFloat16Bits(value) === bits;
      if (!ok) mismatches.push(bits);
    }
    expect(mismatches).toEqual([]);
  });

  it("rounds random floats to the nearest half, ties to even", () => {
    const random = new SeededRandom(7);
    const failures: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      // Spread over subnormal, normal and overflowing magnitudes.
      const value = Math.fround((random.nextFloat() * 2 - 1) * 2 ** (random.nextFloat() * 44 - 28));
      const bits = float32ToFloat16Bits(value);
      const rounded = float16BitsToFloat32(bits);
      if (!Number.isFinite(rounded)) {
        if (Math.abs(value) < 65520) failures.push(`${value} overflowed`);
        continue;
      }
      const error = Math.abs(rounded - value);
      for (const neighbour of [bits - 1, bits + 1]) {
        if ((neighbour & 0x7fff) >= 0x7c00 || neighbour < 0 || (neighbour & 0x8000) !== (bits & 0x8000)) continue;
        const other = Math.abs(float16BitsToFloat32(neighbour) - value);
        if (error > other || (error === other && (bits & 1) === 1)) failures.push(`${value} -> 0x${bits.toString(16)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("bulk conversions agree with the scalar ones", () => {
    const values = new SeededRandom(3).fillUniform(new Float32Array(4096), 70_000);
    const halves = float32ArrayToFloat16Bits(values);
    expect(Array.from(halves)).toEqual(Array.from(values, (value) => float32ToFloat16Bits(value)));
    const back = float16BitsToFloat32Array(halves);
    expect(Array.from(back)).toEqual(Array.from(halves, (bits) => Math.fround(float16BitsToFloat32(bits))));
  });
});
