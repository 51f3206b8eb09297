// IEEE 754 binary16 <-> binary32 conversion. Bit-exact with numpy's float32 -> float16 cast
// (round to nearest, ties to even; overflow to infinity; NaN stays NaN), which is what
// llama.cpp's converters and PyTorch produce, so our F16 files match theirs byte for byte.

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** Rounds a float32 bit pattern to binary16 bits. Shared by the scalar and bulk paths. */
function bitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;

  if (exponent === 0xff) {
    // Keep NaN a (quiet) NaN; infinities map to infinities.
    return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  }
  const halfExponent = exponent - 112; // rebias 127 -> 15
  if (halfExponent >= 0x1f) return sign | 0x7c00;

  if (halfExponent <= 0) {
    // Subnormal half: value = h * 2^-24 with h = significand >> (126 - exponent).
    const shift = 126 - exponent;
    if (shift > 24) return sign; // below half the smallest subnormal: rounds to zero
    const significand = mantissa | 0x800000;
    let half = significand >>> shift;
    const remainder = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++;
    return sign | half; // a carry into bit 10 correctly yields the smallest normal
  }

  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half++; // carry may reach infinity: correct
  return sign | half;
}

/** binary16 bits of `value` (rounded to nearest, ties to even). */
export function float32ToFloat16Bits(value: number): number {
  scratchFloat[0] = value;
  return bitsToHalf(scratchBits[0]!);
}

/** The float value of binary16 bits (exact: every half is representable as a float32). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Converts `source` to binary16 bits, writing into `target` (allocated when omitted). */
export function float32ArrayToFloat16Bits(source: Float32Array, target?: Uint16Array): Uint16Array {
  const out = target ?? new Uint16Array(source.length);
  if (out.length < source.length) throw new RangeError("float16 target is shorter than the source");
  const bits = new Uint32Array(source.buffer, source.byteOffset, source.length);
  for (let i = 0; i < bits.length; i++) out[i] = bitsToHalf(bits[i]!);
  return out;
}

let halfToFloatTable: Float32Array | undefined;

/** Converts binary16 bits to float32, via a 256 KiB table built on first use (bulk decode is hot). */
export function float16BitsToFloat32Array(source: Uint16Array, target?: Float32Array): Float32Array {
  if (!halfToFloatTable) {
    halfToFloatTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfToFloatTable[h] = float16BitsToFloat32(h);
  }
  const table = halfToFloatTable;
  const out = target ?? new Float32Array(source.length);
  if (out.length < source.length) throw new RangeError("float32 target is shorter than the source");
  for (let i = 0; i < source.length; i++) out[i] = table[source[i]!]!;
  return out;
}
