import type { FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { writeFileAtomically } from "../util/atomic-file.js";
import { float32ArrayToFloat16Bits } from "./float16.js";
import { ggmlTensorByteLength, ggmlTypeByName } from "./ggml-tensor-types.js";
import { GgufHeaderEncoder } from "./gguf-header-encoder.js";
import { Q8_0_BLOCK, quantizeQ8_0 } from "./q8-0.js";
import {
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufError,
  type GgufMetadataValue,
  type GgufTensorInput,
  type GgufWriteInput,
} from "./gguf-types.js";

/** ggml's GGML_MAX_NAME is 64 including the terminating NUL; llama.cpp refuses longer names. */
const MAX_TENSOR_NAME_BYTES = 63;
const MAX_DIMS = 4;
/** Elements converted and written per step, so an F16 model never needs a second full-size copy. */
const CHUNK_ELEMENTS = 1 << 20;

interface PlannedTensor {
  input: GgufTensorInput;
  /** Offset relative to the start of the data section. */
  relativeOffset: number;
  byteLength: number;
}

/**
 * Writes a GGUF v3 file atomically: into a temporary file beside `path`, then renamed over it, so readers
 * (and concurrent writers of the same content) never observe a partial file.
 */
export async function writeGgufFile(path: string, input: GgufWriteInput): Promise<void> {
  if (endianness() !== "LE") throw new GgufError("writing GGUF needs a little-endian host");
  const { metadata, alignment } = withAlignment(input.metadata, input.alignment);
  const planned = planTensors(input.tensors, alignment);
  const header = encodeHeader(metadata, planned, alignment);

  await writeFileAtomically(path, async (file) => {
    let position = 0;
    position += await writeAll(file, header, position);
    for (const tensor of planned) {
      const start = header.length + tensor.relativeOffset;
      if (start > position) position += await writeAll(file, Buffer.alloc(start - position), position);
      position += await writeTensorData(file, tensor.input, position);
    }
  });
}

/** Resolves the alignment from the option and/or `general.alignment`, adding the key when it is not 32. */
function withAlignment(
  metadata: Array<[string, GgufMetadataValue]>,
  requested: number | undefined,
): { metadata: Array<[string, GgufMetadataValue]>; alignment: number } {
  const seen = new Set<string>();
  for (const [key] of metadata) {
    if (seen.has(key)) throw new GgufError(`duplicate metadata key '${key}'`);
    seen.add(key);
  }
  const entry = metadata.find(([key]) => key === GGUF_ALIGNMENT_KEY)?.[1];
  if (entry && (entry.type !== "uint32" || typeof entry.value !== "number")) {
    throw new GgufError(`${GGUF_ALIGNMENT_KEY} must be a uint32`);
  }
  const fromMetadata = entry?.value as number | undefined;
  if (requested !== undefined && fromMetadata !== undefined && requested !== fromMetadata) {
    throw new GgufError(`alignment ${requested} contradicts ${GGUF_ALIGNMENT_KEY}=${fromMetadata}`);
  }
  const alignment = requested ?? fromMetadata ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 2 ** 31 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufError(`alignment must be a power of two, got ${alignment}`);
  }
  // Readers assume 32 unless told otherwise, so any other alignment must be recorded in the file.
  if (fromMetadata === undefined && alignment !== GGUF_DEFAULT_ALIGNMENT) {
    return { metadata: [...metadata, [GGUF_ALIGNMENT_KEY, { type: "uint32", value: alignment }]], alignment };
  }
  return { metadata, alignment };
}

function planTensors(tensors: GgufTensorInput[], alignment: number): PlannedTensor[] {
  const names = new Set<string>();
  let offset = 0;
  return tensors.map((input) => {
    validateTensor(input, names);
    const type = ggmlTypeByName(input.type)!;
    const byteLength = ggmlTensorByteLength(type, input.shape, input.name);
    const relativeOffset = alignUp(offset, alignment);
    offset = relativeOffset + byteLength;
    return { input, relativeOffset, byteLength };
  });
}

function validateTensor(tensor: GgufTensorInput, names: Set<string>): void {
  const { name, shape, type, data } = tensor;
  if (name.length === 0 || Buffer.byteLength(name, "utf8") > MAX_TENSOR_NAME_BYTES) {
    throw new GgufError(`tensor name '${name}' must be 1-${MAX_TENSOR_NAME_BYTES} bytes`);
  }
  if (names.has(name)) throw new GgufError(`duplicate tensor name '${name}'`);
  names.add(name);
  if (type !== "F32" && type !== "F16" && type !== "Q8_0") throw new GgufError(`tensor '${name}': cannot write type ${String(type)}`);
  if (shape.length < 1 || shape.length > MAX_DIMS || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new GgufError(`tensor '${name}': shape [${shape.join(", ")}] must have 1-${MAX_DIMS} positive dimensions`);
  }
  if (type === "Q8_0" && shape[0]! % Q8_0_BLOCK !== 0) {
    throw new GgufError(`tensor '${name}': Q8_0 needs ne[0] to be a multiple of ${Q8_0_BLOCK}, shape is [${shape.join(", ")}]`);
  }
  const elements = shape.reduce((product, dim) => product * dim, 1);
  if (!(data instanceof Float32Array) || data.length !== elements) {
    throw new GgufError(`tensor '${name}': shape [${shape.join(", ")}] needs ${elements} values, got ${data.length}`);
  }
}

function encodeHeader(metadata: Array<[string, GgufMetadataValue]>, tensors: PlannedTensor[], alignment: number): Buffer {
  const encoder = new GgufHeaderEncoder();
  encoder.u32(GGUF_MAGIC);
  encoder.u32(GGUF_VERSION);
  encoder.u64(tensors.length);
  encoder.u64(metadata.length);
  for (const [key, value] of metadata) {
    encoder.string(key);
    encoder.metadataValue(key, value);
  }
  for (const { input, relativeOffset } of tensors) {
    encoder.string(input.name);
    encoder.u32(input.shape.length);
    for (const dim of input.shape) encoder.u64(dim);
    encoder.u32(ggmlTypeByName(input.type)!.id);
    encoder.u64(relativeOffset);
  }
  encoder.zeros(alignUp(encoder.byteLength, alignment) - encoder.byteLength);
  return encoder.toBuffer();
}

async function writeTensorData(file: FileHandle, tensor: GgufTensorInput, position: number): Promise<number> {
  const { data } = tensor;
  if (tensor.type === "F32") {
    return writeAll(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength), position);
  }
  if (tensor.type === "Q8_0") {
    let written = 0;
    for (let start = 0; start < data.length; start += CHUNK_ELEMENTS) {
      const blocks = quantizeQ8_0(data.subarray(start, Math.min(start + CHUNK_ELEMENTS, data.length)));
      written += await writeAll(file, Buffer.from(blocks.buffer, 0, blocks.byteLength), position + written);
    }
    return written;
  }
  const halves = new Uint16Array(Math.min(CHUNK_ELEMENTS, data.length));
  let written = 0;
  for (let start = 0; start < data.length; start += CHUNK_ELEMENTS) {
    const chunk = data.subarray(start, Math.min(start + CHUNK_ELEMENTS, data.length));
    const converted = float32ArrayToFloat16Bits(chunk, halves).subarray(0, chunk.length);
    written += await writeAll(file, Buffer.from(converted.buffer, 0, converted.byteLength), position + written);
  }
  return written;
}

/** FileHandle.write may write less than asked; loop until the whole buffer is on disk. */
async function writeAll(file: FileHandle, bytes: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
  return bytes.length;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
