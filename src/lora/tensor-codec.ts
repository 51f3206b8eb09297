import { float16BitsToFloat32Array, float32ArrayToFloat16Bits } from "../gguf/float16.js";
import { LoraError } from "./errors.js";
import type { SafetensorsDtype } from "./safetensors.js";

/** Float dtypes adapters store weights in. BF16 is read (PEFT exports use it) but never written. */
export type FloatDtype = "F32" | "F16";

/** Decodes raw little-endian F32/F16/BF16 bytes into a fresh Float32Array. */
export function decodeFloats(dtype: SafetensorsDtype, bytes: Uint8Array, what: string): Float32Array {
  switch (dtype) {
    case "F32":
      // View when aligned (SafetensorsFile.readBytes hands out fresh aligned buffers), copy otherwise.
      return bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Float32Array(bytes.slice().buffer);
    case "F16":
      return float16BitsToFloat32Array(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
    case "BF16": {
      // bf16 is the top half of a float32: widen by shifting into the high 16 bits.
      const half = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
      const out = new Uint32Array(half.length);
      for (let i = 0; i < half.length; i++) out[i] = half[i]! << 16;
      return new Float32Array(out.buffer);
    }
    default:
      throw new LoraError("ADAPTER_BAD_TENSORS", `${what} has dtype ${dtype}; expected F32, F16 or BF16`);
  }
}

/** Encodes floats as F32 (copy-free view) or F16 (round to nearest even) bytes. */
export function encodeFloats(values: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const half = float32ArrayToFloat16Bits(values);
  return new Uint8Array(half.buffer, half.byteOffset, half.byteLength);
}
