import { open } from "node:fs/promises";
import { endianness } from "node:os";
import { FileCursor } from "./file-cursor.js";
import { ggmlTensorByteLength, ggmlTypeById } from "./ggml-tensor-types.js";
import {
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_SCALAR_BYTE_SIZES,
  GgufError,
  scalarTypeFromCode,
  type GgufFile,
  type GgufMetadataValue,
  type GgufScalarType,
  type GgufScalarValue,
  type GgufTensorInfo,
} from "./gguf-types.js";
import { decodeTensorBytes } from "./tensor-decoding.js";

export { decodeTensorBytes } from "./tensor-decoding.js";

// Smallest possible encodings, used to reject counts that could not fit in the bytes left.
const MIN_KV_BYTES = 8 + 4 + 1; // key length, value type, one-byte value
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8; // name length, n_dims, type, offset
const MAX_KEY_BYTES = 65_535;
const MAX_STRING_BYTES = 256 * 1024 * 1024; // chat templates and merges are far below this
const MAX_DIMS = 4;
const ARRAY_TYPE_CODE = 9;

/** Reads the header of a GGUF v2/v3 file: metadata and tensor descriptions, never tensor data. */
export async function readGgufFile(path: string): Promise<GgufFile> {
  if (endianness() !== "LE") throw new GgufError("reading GGUF needs a little-endian host");
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    const cursor = new FileCursor(file, size, path);
    const version = await readPreamble(cursor, path);
    const tensorCount = await cursor.count("tensor count", Math.floor(cursor.remaining / MIN_TENSOR_INFO_BYTES));
    const kvCount = await cursor.count("metadata count", Math.floor(cursor.remaining / MIN_KV_BYTES));

    const metadata = new Map<string, GgufMetadataValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = await readString(cursor, "metadata key", MAX_KEY_BYTES);
      if (metadata.has(key)) throw new GgufError(`${path}: duplicate metadata key '${key}'`);
      metadata.set(key, await readValue(cursor, key));
    }

    const rawTensors: Array<{ name: string; typeId: number; shape: number[]; relativeOffset: number }> = [];
    for (let i = 0; i < tensorCount; i++) rawTensors.push(await readTensorInfo(cursor, path));

    const alignment = alignmentOf(metadata, path);
    const dataOffset = Math.ceil(cursor.position / alignment) * alignment;
    const names = new Set<string>();
    const tensors = rawTensors.map((raw): GgufTensorInfo => {
      if (names.has(raw.name)) throw new GgufError(`${path}: duplicate tensor name '${raw.name}'`);
      names.add(raw.name);
      const type = ggmlTypeById(raw.typeId);
      if (!type) throw new GgufError(`${path}: tensor '${raw.name}' has unknown ggml type id ${raw.typeId}`);
      if (raw.relativeOffset % alignment !== 0) {
        throw new GgufError(`${path}: tensor '${raw.name}' offset ${raw.relativeOffset} is not ${alignment}-aligned`);
      }
      const byteLength = ggmlTensorByteLength(type, raw.shape, raw.name);
      const offset = dataOffset + raw.relativeOffset;
      if (offset + byteLength > size) {
        throw new GgufError(
          `${path}: truncated file: tensor '${raw.name}' needs bytes ${offset}..${offset + byteLength}, file has ${size}`,
        );
      }
      return { name: raw.name, type: type.name, typeId: type.id, shape: raw.shape, offset, byteLength };
    });
    return { version, metadata, tensors, dataOffset, alignment };
  } finally {
    await file.close();
  }
}

/** Reads one tensor's values as float32 (F32, F16, BF16 and Q8_0). */
export async function readTensorAsFloat32(path: string, info: GgufTensorInfo): Promise<Float32Array> {
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    if (info.offset + info.byteLength > size) {
      throw new GgufError(`${path}: truncated file: tensor '${info.name}' ends past the end of the file`);
    }
    const bytes = Buffer.alloc(info.byteLength);
    let filled = 0;
    while (filled < bytes.length) {
      const { bytesRead } = await file.read(bytes, filled, bytes.length - filled, info.offset + filled);
      if (bytesRead === 0) throw new GgufError(`${path}: file shrank while reading tensor '${info.name}'`);
      filled += bytesRead;
    }
    return decodeTensorBytes(bytes, info);
  } finally {
    await file.close();
  }
}

async function readPreamble(cursor: FileCursor, path: string): Promise<number> {
  if (cursor.fileSize < 4) throw new GgufError(`${path}: not a GGUF file (only ${cursor.fileSize} bytes)`);
  const magic = await cursor.u32("magic");
  if (magic !== GGUF_MAGIC) {
    throw new GgufError(`${path}: not a GGUF file (bad magic 0x${magic.toString(16).padStart(8, "0")})`);
  }
  const version = await cursor.u32("version");
  if (version === 2 || version === 3) return version;
  if (version === 0x02000000 || version === 0x03000000) {
    throw new GgufError(`${path}: big-endian GGUF files are not supported`);
  }
  throw new GgufError(`${path}: unsupported GGUF version ${version} (need 2 or 3)`);
}

async function readString(cursor: FileCursor, what: string, maxBytes = MAX_STRING_BYTES): Promise<string> {
  const length = await cursor.count(`${what} length`, Math.min(maxBytes, cursor.remaining));
  return (await cursor.bytes(length, what)).toString("utf8");
}

async function readValue(cursor: FileCursor, key: string): Promise<GgufMetadataValue> {
  const typeCode = await cursor.u32(`type of '${key}'`);
  if (typeCode === ARRAY_TYPE_CODE) {
    const itemCode = await cursor.u32(`item type of '${key}'`);
    const itemType = scalarTypeFromCode(itemCode);
    if (!itemType) {
      const reason = itemCode === ARRAY_TYPE_CODE ? "nested arrays are not supported" : `unknown item type ${itemCode}`;
      throw new GgufError(`${cursor.source}: metadata '${key}': ${reason}`);
    }
    const minItemBytes = itemType === "string" ? 8 : GGUF_SCALAR_BYTE_SIZES[itemType];
    const length = await cursor.count(`length of '${key}'`, Math.floor(cursor.remaining / minItemBytes));
    return { type: "array", itemType, value: await readArrayItems(cursor, key, itemType, length) };
  }
  const type = scalarTypeFromCode(typeCode);
  if (!type) throw new GgufError(`${cursor.source}: metadata '${key}': unknown value type ${typeCode}`);
  return { type, value: await readScalar(cursor, key, type) };
}

async function readArrayItems(cursor: FileCursor, key: string, itemType: GgufScalarType, length: number): Promise<GgufScalarValue[]> {
  if (itemType === "string" || itemType === "bool") {
    const items: GgufScalarValue[] = new Array(length);
    for (let i = 0; i < length; i++) items[i] = await readScalar(cursor, key, itemType);
    return items;
  }
  // Fixed-width items (token scores, token types) are decoded from one read: vocabularies hold 100k+ of them.
  const size = GGUF_SCALAR_BYTE_SIZES[itemType];
  const bytes = await cursor.bytes(length * size, `items of '${key}'`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read = FIXED_WIDTH_READERS[itemType];
  const items: GgufScalarValue[] = new Array(length);
  for (let i = 0; i < length; i++) items[i] = read(view, i * size);
  return items;
}

const FIXED_WIDTH_READERS: Record<Exclude<GgufScalarType, "string" | "bool">, (view: DataView, offset: number) => GgufScalarValue> = {
  uint8: (v, o) => v.getUint8(o),
  int8: (v, o) => v.getInt8(o),
  uint16: (v, o) => v.getUint16(o, true),
  int16: (v, o) => v.getInt16(o, true),
  uint32: (v, o) => v.getUint32(o, true),
  int32: (v, o) => v.getInt32(o, true),
  uint64: (v, o) => v.getBigUint64(o, true),
  int64: (v, o) => v.getBigInt64(o, true),
  float32: (v, o) => v.getFloat32(o, true),
  float64: (v, o) => v.getFloat64(o, true),
};

async function readScalar(cursor: FileCursor, key: string, type: GgufScalarType): Promise<GgufScalarValue> {
  const what = `value of '${key}'`;
  switch (type) {
    case "uint8":
      return cursor.u8(what);
    case "int8":
      return cursor.i8(what);
    case "uint16":
      return cursor.u16(what);
    case "int16":
      return cursor.i16(what);
    case "uint32":
      return cursor.u32(what);
    case "int32":
      return cursor.i32(what);
    case "uint64":
      return cursor.u64(what);
    case "int64":
      return cursor.i64(what);
    case "float32":
      return cursor.f32(what);
    case "float64":
      return cursor.f64(what);
    case "bool": {
      const byte = await cursor.u8(what);
      if (byte > 1) throw new GgufError(`${cursor.source}: metadata '${key}': invalid bool byte ${byte}`);
      return byte === 1;
    }
    case "string":
      return readString(cursor, what);
  }
}

async function readTensorInfo(cursor: FileCursor, path: string) {
  const name = await readString(cursor, "tensor name", MAX_KEY_BYTES);
  const dimCount = await cursor.u32(`dimension count of '${name}'`);
  if (dimCount > MAX_DIMS) throw new GgufError(`${path}: tensor '${name}' has ${dimCount} dimensions (max ${MAX_DIMS})`);
  const shape: number[] = [];
  for (let d = 0; d < dimCount; d++) shape.push(await cursor.count(`dimension ${d} of '${name}'`, Number.MAX_SAFE_INTEGER));
  const elements = shape.reduce((product, dim) => product * dim, 1);
  if (!Number.isSafeInteger(elements)) throw new GgufError(`${path}: tensor '${name}' has an absurd element count`);
  const typeId = await cursor.u32(`type of '${name}'`);
  const relativeOffset = await cursor.count(`offset of '${name}'`, Number.MAX_SAFE_INTEGER);
  return { name, typeId, shape, relativeOffset };
}

function alignmentOf(metadata: Map<string, GgufMetadataValue>, path: string): number {
  const entry = metadata.get(GGUF_ALIGNMENT_KEY);
  if (!entry) return GGUF_DEFAULT_ALIGNMENT;
  const value = entry.value;
  if (entry.type !== "uint32" || typeof value !== "number" || value === 0 || (value & (value - 1)) !== 0) {
    throw new GgufError(`${path}: ${GGUF_ALIGNMENT_KEY} must be a uint32 power of two`);
  }
  return value;
}
