import { Q8_0_BLOCK } from "../gguf/q8-0.js";

/** The weight types `model create --dtype` writes. Norms and biases always stay F32, as llama.cpp keeps them. */
export const WEIGHT_DTYPES = ["f32", "f16", "q8_0"] as const;
export type WeightDtype = (typeof WEIGHT_DTYPES)[number];

/** llama.cpp's `general.file_type` (enum llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0. */
export const FILE_TYPE: Readonly<Record<WeightDtype, number>> = { f32: 0, f16: 1, q8_0: 7 };

/**
 * The tensor type of a weight matrix whose rows are `ne0` long. Q8_0 blocks run along rows, so a matrix whose
 * rows do not split into blocks of 32 falls back to F16, as llama.cpp's quantizer falls back.
 */
export function weightTensorType(dtype: WeightDtype, ne0: number): "F32" | "F16" | "Q8_0" {
  if (dtype === "f32") return "F32";
  if (dtype === "q8_0" && ne0 % Q8_0_BLOCK === 0) return "Q8_0";
  return "F16";
}
