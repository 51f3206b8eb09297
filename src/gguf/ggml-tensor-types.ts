import { GgufError } from "./gguf-types.js";

/** Storage layout of one ggml tensor type: `blockSize` elements take `typeSize` bytes. */
export interface GgmlTensorType {
  name: string;
  id: number;
  blockSize: number;
  typeSize: number;
}

// From enum ggml_type (ggml.h) and the block structs in ggml-common.h of the llama.cpp that
// node-llama-cpp 3.21.1 bundles. Ids 4, 5 and 31-33, 36-38 were removed upstream and are refused.
const TYPES: GgmlTensorType[] = [
  { name: "F32", id: 0, blockSize: 1, typeSize: 4 },
  { name: "F16", id: 1, blockSize: 1, typeSize: 2 },
  { name: "Q4_0", id: 2, blockSize: 32, typeSize: 18 },
  { name: "Q4_1", id: 3, blockSize: 32, typeSize: 20 },
  { name: "Q5_0", id: 6, blockSize: 32, typeSize: 22 },
  { name: "Q5_1", id: 7, blockSize: 32, typeSize: 24 },
  { name: "Q8_0", id: 8, blockSize: 32, typeSize: 34 },
  { name: "Q8_1", id: 9, blockSize: 32, typeSize: 36 },
  { name: "Q2_K", id: 10, blockSize: 256, typeSize: 84 },
  { name: "Q3_K", id: 11, blockSize: 256, typeSize: 110 },
  { name: "Q4_K", id: 12, blockSize: 256, typeSize: 144 },
  { name: "Q5_K", id: 13, blockSize: 256, typeSize: 176 },
  { name: "Q6_K", id: 14, blockSize: 256, typeSize: 210 },
  { name: "Q8_K", id: 15, blockSize: 256, typeSize: 292 },
  { name: "IQ2_XXS", id: 16, blockSize: 256, typeSize: 66 },
  { name: "IQ2_XS", id: 17, blockSize: 256, typeSize: 74 },
  { name: "IQ3_XXS", id: 18, blockSize: 256, typeSize: 98 },
  { name: "IQ1_S", id: 19, blockSize: 256, typeSize: 50 },
  { name: "IQ4_NL", id: 20, blockSize: 32, typeSize: 18 },
  { name: "IQ3_S", id: 21, blockSize: 256, typeSize: 110 },
  { name: "IQ2_S", id: 22, blockSize: 256, typeSize: 82 },
  { name: "IQ4_XS", id: 23, blockSize: 256, typeSize: 136 },
  { name: "I8", id: 24, blockSize: 1, typeSize: 1 },
  { name: "I16", id: 25, blockSize: 1, typeSize: 2 },
  { name: "I32", id: 26, blockSize: 1, typeSize: 4 },
  { name: "I64", id: 27, blockSize: 1, typeSize: 8 },
  { name: "F64", id: 28, blockSize: 1, typeSize: 8 },
  { name: "IQ1_M", id: 29, blockSize: 256, typeSize: 56 },
  { name: "BF16", id: 30, blockSize: 1, typeSize: 2 },
  { name: "TQ1_0", id: 34, blockSize: 256, typeSize: 54 },
  { name: "TQ2_0", id: 35, blockSize: 256, typeSize: 66 },
  { name: "MXFP4", id: 39, blockSize: 32, typeSize: 17 },
  { name: "NVFP4", id: 40, blockSize: 64, typeSize: 36 },
  { name: "Q1_0", id: 41, blockSize: 128, typeSize: 18 },
  { name: "Q2_0", id: 42, blockSize: 64, typeSize: 18 },
];

const byId = new Map(TYPES.map((t) => [t.id, t]));
const byName = new Map(TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlTensorType | undefined {
  return byId.get(id);
}

export function ggmlTypeByName(name: string): GgmlTensorType | undefined {
  return byName.get(name);
}

/** Bytes taken by a tensor of `type` and `shape`; ne[0] must be a whole number of blocks, as in ggml. */
export function ggmlTensorByteLength(type: GgmlTensorType, shape: readonly number[], tensorName: string): number {
  const rowLength = shape[0] ?? 1;
  if (rowLength % type.blockSize !== 0) {
    throw new GgufError(`tensor '${tensorName}': ne[0]=${rowLength} is not a multiple of the ${type.name} block size ${type.blockSize}`);
  }
  const elements = shape.reduce((product, dim) => product * dim, 1);
  const bytes = (elements / type.blockSize) * type.typeSize;
  if (!Number.isSafeInteger(bytes)) throw new GgufError(`tensor '${tensorName}': size overflows`);
  return bytes;
}
