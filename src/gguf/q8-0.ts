import { float16BitsToFloat32, float32ToFloat16Bits } from "./float16.js";

/**
 * ggml's Q8_0 as quantize_row_q8_0_ref writes it (ggml-quants.c): blocks of 32 values along ne[0], each a
 * float16 scale d = max|x| / 127 followed by 32 int8 q = roundf(x / d) (ties away from zero), computed in
 * float32. Dequantized value: d * q.
 */

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** Quantizes `values` (length a multiple of 32) into Q8_0 blocks. */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK !== 0) throw new RangeError(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  const out = new Uint8Array((values.length / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let block = 0; block < values.length / Q8_0_BLOCK; block++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[block * Q8_0_BLOCK + i]!));
    const d = Math.fround(amax / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    const base = block * Q8_0_BLOCK_BYTES;
    view.setUint16(base, float32ToFloat16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const x = Math.fround(values[block * Q8_0_BLOCK + i]! * id);
      view.setInt8(base + 2 + i, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

/** The values a Q8_0 round trip of `values` leaves (what llama.cpp multiplies with). */
export function q8_0RoundTrip(values: Float32Array): Float32Array {
  const bytes = quantizeQ8_0(values);
  const view = new DataView(bytes.buffer);
  return Float32Array.from(values, (_, i) => {
    const base = Math.floor(i / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
    return Math.fround(float16BitsToFloat32(view.getUint16(base, true)) * view.getInt8(base + 2 + (i % Q8_0_BLOCK)));
  });
}
