import { float16BitsToFloat32, float16BitsToFloat32Array } from "./float16.js";
import { GgufError, type GgufTensorInfo } from "./gguf-types.js";

const Q8_0_BLOCK_ELEMENTS = 32;
const Q8_0_BLOCK_BYTES = 34; // f16 scale + 32 int8 quants

/** Types whose values we can turn into float32; K-quants and friends are llama.cpp's business. */
export const DECODABLE_TENSOR_TYPES = ["F32", "F16", "BF16", "Q8_0"] as const;

/** Decodes a tensor's raw little-endian bytes (exactly `info.byteLength` of them) into float32 values. */
export function decodeTensorBytes(bytes: Uint8Array, info: GgufTensorInfo): Float32Array {
  if (bytes.length !== info.byteLength) {
    throw new GgufError(`tensor '${info.name}': expected ${info.byteLength} bytes, got ${bytes.length}`);
  }
  const elements = info.shape.reduce((product, dim) => product * dim, 1);
  // Copy into a fresh, aligned buffer: typed-array views need their element alignment.
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  switch (info.type) {
    case "F32":
      return new Float32Array(aligned.buffer, 0, elements);
    case "F16":
      return float16BitsToFloat32Array(new Uint16Array(aligned.buffer, 0, elements));
    case "BF16":
      return decodeBf16(new Uint16Array(aligned.buffer, 0, elements));
    case "Q8_0":
      return decodeQ8_0(aligned, elements);
    default:
      throw new GgufError(`tensor '${info.name}' has type ${info.type}; only ${DECODABLE_TENSOR_TYPES.join(", ")} can be read as float32`);
  }
}

/** bfloat16 is the top half of a float32, so widening is a shift. */
function decodeBf16(halves: Uint16Array): Float32Array {
  const bits = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
  return new Float32Array(bits.buffer);
}

function decodeQ8_0(bytes: Uint8Array, elements: number): Float32Array {
  const out = new Float32Array(elements);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let block = 0; block < elements / Q8_0_BLOCK_ELEMENTS; block++) {
    const base = block * Q8_0_BLOCK_BYTES;
    const scale = float16BitsToFloat32(view.getUint16(base, true));
    for (let i = 0; i < Q8_0_BLOCK_ELEMENTS; i++) {
      out[block * Q8_0_BLOCK_ELEMENTS + i] = scale * view.getInt8(base + 2 + i);
    }
  }
  return out;
}
