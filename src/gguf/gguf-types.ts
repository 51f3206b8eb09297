// Public shapes of a GGUF file (spec: ggml docs/gguf.md, version 3) shared by the reader and the writer.

export type GgufScalarType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "uint64"
  | "int64"
  | "float32"
  | "float64"
  | "bool"
  | "string";

export type GgufScalarValue = number | bigint | boolean | string;

/**
 * One metadata value with its exact on-disk type: llama.cpp is strict about types (an f64 where it expects
 * f32 can abort the process), so the type is never inferred from the JS value.
 * The reader returns uint64/int64 as bigint; the writer accepts number or bigint for them.
 */
export type GgufMetadataValue =
  | { type: GgufScalarType; value: GgufScalarValue }
  | { type: "array"; itemType: GgufScalarType; value: GgufScalarValue[] };

/** A tensor to write: F32, F16 or Q8_0 (q8-0.ts); other quantized types come from llama.cpp's tools. */
export interface GgufTensorInput {
  name: string;
  type: "F32" | "F16" | "Q8_0";
  /** ggml `ne` order: ne[0] varies fastest, so a PyTorch [out, in] matrix has shape [in, out]. */
  shape: number[];
  /** Row-major values; converted to binary16 when `type` is F16, quantized when Q8_0 (shape[0] % 32 == 0). */
  data: Float32Array;
}

export interface GgufWriteInput {
  metadata: Array<[string, GgufMetadataValue]>;
  tensors: GgufTensorInput[];
  /** Tensor data alignment in bytes (power of two). Default: `general.alignment` if present, else 32. */
  alignment?: number;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml type name as in ggml.h without the prefix, e.g. "F32", "F16", "BF16", "Q8_0", "Q4_K". */
  type: string;
  typeId: number;
  /** ggml `ne` order (see GgufTensorInput.shape). */
  shape: number[];
  /** Absolute offset of the tensor's first byte in the file. */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufMetadataValue>;
  tensors: GgufTensorInfo[];
  /** Absolute offset where the tensor data section starts. */
  dataOffset: number;
  alignment: number;
}

/** A malformed, truncated or unsupported GGUF file, or an input the writer refuses. */
export class GgufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GgufError";
  }
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";

/** On-disk codes of metadata value types (gguf_type in gguf.h). */
export const GGUF_VALUE_TYPE_CODES = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

const codeToScalarType = new Map<number, GgufScalarType>(
  Object.entries(GGUF_VALUE_TYPE_CODES)
    .filter(([name]) => name !== "array")
    .map(([name, code]) => [code, name as GgufScalarType]),
);

export function scalarTypeFromCode(code: number): GgufScalarType | undefined {
  return codeToScalarType.get(code);
}

/** Encoded size of fixed-width scalars; strings are variable (8-byte length + bytes). */
export const GGUF_SCALAR_BYTE_SIZES: Record<Exclude<GgufScalarType, "string">, number> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  uint64: 8,
  int64: 8,
  float32: 4,
  float64: 8,
  bool: 1,
};
