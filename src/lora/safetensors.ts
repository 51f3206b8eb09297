import { open, type FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { writeFileAtomically } from "../util/atomic-file.js";
import { LoraError } from "./errors.js";

/**
 * safetensors: `u64 LE header length | JSON header | data`. The header maps tensor name to
 * `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data section) plus an optional
 * `__metadata__` string map. Data is little-endian; this module reinterprets bytes with host-endian typed
 * arrays, so it refuses to run on big-endian hosts rather than silently corrupting tensors.
 */

export type SafetensorsDtype = "F32" | "F16" | "BF16" | "U8" | "BOOL" | "I32" | "I64";

export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  U8: 1,
  BOOL: 1,
  I32: 4,
  I64: 8,
};

/** Headers past this are refused before allocation: a corrupt length must not make us allocate gigabytes. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
}

export interface SafetensorsTensorData extends SafetensorsTensorSpec {
  /** Exactly product(shape) * dtype size bytes, little-endian. */
  readonly data: ArrayBufferView;
}

export interface SafetensorsTensorInfo extends SafetensorsTensorSpec {
  /** [begin, end) relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
}

export interface SafetensorsLayout {
  /** Length prefix + JSON header (space-padded to 8-byte alignment): everything before the data. */
  readonly prefix: Uint8Array;
  readonly tensors: readonly SafetensorsTensorInfo[];
  /** Exact size of the file this layout describes. */
  readonly fileBytes: number;
}

function assertLittleEndianHost(): void {
  if (endianness() !== "LE") {
    throw new LoraError("ADAPTER_UNSUPPORTED", "safetensors I/O needs a little-endian host");
  }
}

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === "string" && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, value);
}

export function tensorByteLength(dtype: SafetensorsDtype, shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1) * SAFETENSORS_DTYPE_BYTES[dtype];
}

/**
 * Computes the header and offsets for tensors in the given order, without any tensor data. The writer uses it,
 * and so do size reports, which is why sizes they print are exact.
 */
export function planSafetensors(
  specs: readonly SafetensorsTensorSpec[],
  metadata: Readonly<Record<string, string>> = {},
): SafetensorsLayout {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  const tensors: SafetensorsTensorInfo[] = [];
  let offset = 0;
  for (const spec of specs) {
    if (spec.name === "__metadata__" || Object.hasOwn(header, spec.name)) {
      throw new LoraError("SAFETENSORS_BAD_WRITE", `duplicate or reserved tensor name '${spec.name}'`);
    }
    if (!spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new LoraError("SAFETENSORS_BAD_WRITE", `tensor '${spec.name}' has an invalid shape [${spec.shape}]`);
    }
    const byteLength = tensorByteLength(spec.dtype, spec.shape);
    const dataOffsets = [offset, offset + byteLength] as const;
    header[spec.name] = { dtype: spec.dtype, shape: [...spec.shape], data_offsets: dataOffsets };
    tensors.push({ name: spec.name, dtype: spec.dtype, shape: [...spec.shape], dataOffsets, byteLength });
    offset += byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned, as the reference writer does.
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const prefix = Buffer.alloc(8 + paddedLength, 0x20);
  prefix.writeBigUInt64LE(BigInt(paddedLength), 0);
  json.copy(prefix, 8);
  return { prefix, tensors, fileBytes: prefix.length + offset };
}

async function writeFully(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/** Writes a safetensors file atomically: a temp file beside `path`, fsync, then rename over it. */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorData[],
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  assertLittleEndianHost();
  const layout = planSafetensors(tensors, metadata);
  tensors.forEach((t, i) => {
    const expected = layout.tensors[i]!.byteLength;
    if (t.data.byteLength !== expected) {
      throw new LoraError(
        "SAFETENSORS_BAD_WRITE",
        `tensor '${t.name}' has ${t.data.byteLength} bytes of data, shape/dtype need ${expected}`,
      );
    }
  });
  await writeFileAtomically(path, async (fh) => {
    await writeFully(fh, layout.prefix);
    for (const t of tensors) {
      await writeFully(fh, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
  });
}

function fail(code: ConstructorParameters<typeof LoraError>[0], path: string, detail: string): never {
  throw new LoraError(code, `${path}: ${detail}`);
}

function parseEntry(path: string, name: string, raw: unknown, dataBytes: number): SafetensorsTensorInfo {
  if (typeof raw !== "object" || raw === null) fail("SAFETENSORS_BAD_ENTRY", path, `entry '${name}' is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDtype(dtype)) fail("SAFETENSORS_UNKNOWN_DTYPE", path, `tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail("SAFETENSORS_BAD_ENTRY", path, `tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    fail("SAFETENSORS_BAD_ENTRY", path, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    fail(
      "SAFETENSORS_OFFSETS_OUT_OF_RANGE",
      path,
      `tensor '${name}' data_offsets [${begin}, ${end}] exceed the ${dataBytes}-byte data section`,
    );
  }
  const expected = tensorByteLength(dtype, shape as number[]);
  if (end - begin !== expected) {
    fail("SAFETENSORS_SIZE_MISMATCH", path, `tensor '${name}' spans ${end - begin} bytes but ${dtype}[${shape}] needs ${expected}`);
  }
  return { name, dtype, shape: shape as number[], dataOffsets: [begin, end], byteLength: end - begin };
}

/** The data section must be tiled exactly: no overlaps (aliasing), no holes, nothing trailing. */
function checkCoverage(path: string, infos: readonly SafetensorsTensorInfo[], dataBytes: number): void {
  const sorted = [...infos].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let covered = 0;
  let previous = "(start of data)";
  for (const t of sorted) {
    const [begin, end] = t.dataOffsets;
    if (begin < covered) fail("SAFETENSORS_OVERLAP", path, `tensor '${t.name}' overlaps '${previous}'`);
    if (begin > covered) fail("SAFETENSORS_GAP", path, `${begin - covered} unreferenced bytes before tensor '${t.name}'`);
    covered = end;
    previous = t.name;
  }
  if (covered !== dataBytes) fail("SAFETENSORS_GAP", path, `${dataBytes - covered} unreferenced bytes at the end of the data`);
}

/** Where a safetensors file's bytes come from: an open file (read on demand) or a buffer already in memory. */
interface ByteSource {
  readonly size: number;
  /** Fills `into` from `position`; throws SAFETENSORS_TRUNCATED at end of data. */
  read(into: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

function fileSource(path: string, handle: FileHandle, size: number): ByteSource {
  return { size, read: (into, position) => readFully(handle, path, into, position), close: () => handle.close() };
}

function bufferSource(path: string, bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: async (into, position) => {
      if (position + into.length > bytes.length) fail("SAFETENSORS_TRUNCATED", path, `unexpected end of data at byte ${bytes.length}`);
      into.set(bytes.subarray(position, position + into.length));
    },
    close: async () => undefined,
  };
}

/**
 * An open safetensors file. Only the header is parsed on open; each tensor is read on demand with a positional
 * read, so multi-gigabyte files never need to fit in memory. `fromBytes` parses a snapshot already in memory
 * (what the server hashed is exactly what it parses). Call `close()` when done.
 */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly source: ByteSource,
    private readonly dataStart: number,
    readonly metadata: Readonly<Record<string, string>>,
    readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    assertLittleEndianHost();
    const handle = await open(path, "r");
    let size: number;
    try {
      size = (await handle.stat()).size;
    } catch (error) {
      await handle.close();
      throw error;
    }
    return SafetensorsFile.parse(path, fileSource(path, handle, size));
  }

  /** Parses bytes already in memory; `label` names them in messages. */
  static async fromBytes(label: string, bytes: Uint8Array): Promise<SafetensorsFile> {
    assertLittleEndianHost();
    return SafetensorsFile.parse(label, bufferSource(label, bytes));
  }

  private static async parse(path: string, source: ByteSource): Promise<SafetensorsFile> {
    try {
      const fileBytes = source.size;
      if (fileBytes < 8) fail("SAFETENSORS_TRUNCATED", path, `file is ${fileBytes} bytes, shorter than the 8-byte header length`);
      const lengthBytes = Buffer.alloc(8);
      await source.read(lengthBytes, 0);
      const headerLength = lengthBytes.readBigUInt64LE(0);
      if (headerLength > BigInt(MAX_HEADER_BYTES)) {
        fail("SAFETENSORS_HEADER_TOO_LARGE", path, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      }
      const dataStart = 8 + Number(headerLength);
      if (dataStart > fileBytes) {
        fail("SAFETENSORS_TRUNCATED", path, `header claims ${headerLength} bytes but the file has ${fileBytes - 8} after the length`);
      }
      const headerBytes = Buffer.alloc(dataStart - 8);
      await source.read(headerBytes, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBytes.toString("utf8"));
      } catch {
        // Never pass the parser's message on: it quotes the input, which may be any file's bytes.
        fail("SAFETENSORS_HEADER_NOT_JSON", path, "header is not valid JSON");
      }
      if (typeof header !== "object" || header === null || Array.isArray(header)) {
        fail("SAFETENSORS_HEADER_NOT_JSON", path, "header is not a JSON object");
      }
      const dataBytes = fileBytes - dataStart;
      const { __metadata__: rawMetadata, ...entries } = header as Record<string, unknown>;
      const metadata = parseMetadata(path, rawMetadata);
      const infos = Object.entries(entries).map(([name, raw]) => parseEntry(path, name, raw, dataBytes));
      checkCoverage(path, infos, dataBytes);
      return new SafetensorsFile(path, source, dataStart, metadata, new Map(infos.map((t) => [t.name, t])));
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new LoraError("SAFETENSORS_NO_SUCH_TENSOR", `${this.path}: no tensor named '${name}'`);
    return info;
  }

  /** The raw little-endian bytes of one tensor, in a fresh 8-byte-aligned buffer (safe for typed-array views). */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const bytes = new Uint8Array(new ArrayBuffer(Math.ceil(info.byteLength / 8) * 8), 0, info.byteLength);
    await this.source.read(bytes, this.dataStart + info.dataOffsets[0]);
    return bytes;
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

function parseMetadata(path: string, raw: unknown): Record<string, string> {
  if (raw === undefined) return {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail("SAFETENSORS_BAD_ENTRY", path, "__metadata__ is not an object");
  }
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== "string") fail("SAFETENSORS_BAD_ENTRY", path, `__metadata__ value for '${key}' is not a string`);
  }
  return { ...(raw as Record<string, string>) };
}

async function readFully(handle: FileHandle, path: string, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) fail("SAFETENSORS_TRUNCATED", path, `unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}
