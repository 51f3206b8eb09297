import { open } from "node:fs/promises";
import { float16BitsToFloat32Array, float32ArrayToFloat16Bits } from "../gguf/float16.js";
import { GgufHeaderEncoder } from "../gguf/gguf-header-encoder.js";
import { GGUF_MAGIC, GGUF_VERSION, GgufError, type GgufFile, type GgufMetadataValue, type GgufTensorInfo } from "../gguf/gguf-types.js";
import { permuteRowsForRope } from "../model/llama-permute.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { materializeA, moduleScale, type Adapter, type LoraModule } from "./adapter.js";
import { architectureLayout, baseTensorName, ropePermutationHeads } from "./architectures.js";
import { doraMagnitudeInGgufRows, rescaleDoraRow } from "./dora.js";
import { LoraError } from "./errors.js";

/**
 * A merged model: the base GGUF with each adapted weight replaced by W' = W + s * B A (s = the module's PEFT
 * scale times the caller's weight), everything else copied byte for byte. Decoding it costs what the base
 * costs, and it means what base + the compiled GGUF LoRA means (llama.cpp computes W x + s B (A x) for that).
 *
 * Layout. A base weight has ggml ne [in, out], i.e. row-major [out, in] like PEFT's W; B A is [out, in] too.
 * Where HF->GGUF conversion permuted the output rows for rope (llama q/k, architectures.ts), B's rows get the
 * same permutation before the product, exactly as the GGUF LoRA compiler does; A (input side) never does.
 *
 * Types. Only F32 and F16 weights are merged, in float64 and rounded once to the weight's own type: an adapted
 * tensor keeps its type and byte size, so the merged file has the base's header (plus provenance metadata)
 * and the base's tensor offsets. Quantized weights are refused: rounding W + dW back to a block quant shifts
 * every weight of a block by up to half a quant step, a change that can exceed the adapter's own effect, and
 * we have no bound on it (those bases keep the LoRA path).
 *
 * The work runs in row blocks and yields to the event loop between them (`yieldEvery`), so a server can build
 * a merged model in the background without stalling requests.
 */

/** Provenance keys added to the merged file (the rest of the metadata is the base's, unchanged). */
export const MERGED_FROM_KEY = "lori.merged.adapter";
export const MERGED_TENSORS_KEY = "lori.merged.tensor_count";

/** Weight types we merge into. */
export const MERGEABLE_WEIGHT_TYPES = ["F32", "F16"] as const;

export interface MergedModelOptions {
  /** Multiplies every module's scale (a set's weight; a cat-merged set passes 1). Default 1. */
  readonly weight?: number;
  /** Recorded in the file's `lori.merged.adapter` metadata. */
  readonly name?: string;
  /** Rows merged per block, between yields to the event loop (default: ~256 K weights' worth). */
  readonly rowsPerBlock?: number;
  /** Checked between blocks: an abort stops the write (nothing is left at `outPath`). */
  readonly signal?: AbortSignal;
}

export interface MergedModelSummary {
  /** Base tensors replaced by merged ones. */
  readonly mergedTensors: number;
  /** Bytes of the written file. */
  readonly bytes: number;
}

/** One adapted base tensor and the modules folded into it (a tensor is adapted by one module in every layout). */
interface MergePlanEntry {
  readonly info: GgufTensorInfo;
  readonly module: LoraModule;
  /** B with the scale folded in and rows in GGUF order, [out, rank] row-major. */
  readonly b: Float32Array;
  /** A, [rank, in] row-major. */
  readonly a: Float32Array;
  /** DoRA: m per output row, GGUF row order; each merged row is rescaled to m * row / ||row|| (dora.ts). */
  readonly magnitude?: Float32Array;
}

function mergeError(message: string): LoraError {
  return new LoraError("ADAPTER_UNSUPPORTED", message);
}

/**
 * Checks that `adapter` can be folded into the base described by `baseHeader` and returns the tensors to
 * replace; throws a one-line LoraError otherwise (unknown architecture, missing or mis-shaped tensor, a
 * quantized weight). Nothing is read or written.
 */
export function planMergedModel(adapter: Adapter, baseHeader: GgufFile, weight = 1): Map<string, MergePlanEntry> {
  const architecture = baseHeader.metadata.get("general.architecture")?.value;
  if (typeof architecture !== "string") throw mergeError("the base model has no general.architecture");
  const layout = architectureLayout(architecture);
  const tensors = new Map(baseHeader.tensors.map((t) => [t.name, t]));
  const plan = new Map<string, MergePlanEntry>();
  for (const m of adapter.modules) {
    const name = baseTensorName(layout, m.layer, m.module);
    const info = tensors.get(name);
    if (!info) throw mergeError(`${name} (layer ${m.layer} ${m.module}) does not exist in the base model: wrong base model?`);
    if (info.shape.length !== 2 || info.shape[0] !== m.inFeatures || info.shape[1] !== m.outFeatures) {
      throw mergeError(
        `${name} is [${info.shape}] (ne) in the base, the adapter expects [${m.inFeatures},${m.outFeatures}]: wrong base model?`,
      );
    }
    if (!(MERGEABLE_WEIGHT_TYPES as readonly string[]).includes(info.type)) {
      throw mergeError(`${name} is ${info.type}: merged models need F32 or F16 weights (a quantized base keeps the LoRA path)`);
    }
    if (plan.has(name)) throw mergeError(`two modules adapt ${name}`);
    const scale = moduleScale(m, adapter.config.use_rslora) * weight;
    const scaled = Float32Array.from(m.b, (x) => x * scale);
    const heads = ropePermutationHeads(layout, baseHeader, m.layer, m.module);
    const b = heads === null ? scaled : permuteRowsForRope(scaled, m.outFeatures, m.rank, heads);
    const magnitude = doraMagnitudeInGgufRows(m, heads);
    plan.set(name, { info, module: m, b, a: materializeA(m), ...(magnitude ? { magnitude } : {}) });
  }
  return plan;
}

/**
 * Adds B A (float64 accumulation) to `rows` rows of W starting at `firstRow`; `w` holds those rows as
 * float32 values and receives the result. Zero entries of B (LoRI-S masks) are skipped.
 */
export function addDeltaRows(
  w: Float32Array,
  entry: Pick<MergePlanEntry, "a" | "b" | "module" | "magnitude">,
  firstRow: number,
  rows: number,
): void {
  const { rank, inFeatures } = entry.module;
  const acc = new Float64Array(inFeatures);
  for (let row = 0; row < rows; row++) {
    const o = firstRow + row;
    const offset = row * inFeatures;
    for (let i = 0; i < inFeatures; i++) acc[i] = w[offset + i]!;
    for (let r = 0; r < rank; r++) {
      const coefficient = entry.b[o * rank + r]!;
      if (coefficient === 0) continue;
      const aRow = r * inFeatures;
      for (let i = 0; i < inFeatures; i++) acc[i] = acc[i]! + coefficient * entry.a[aRow + i]!;
    }
    if (entry.magnitude) rescaleDoraRow(acc, entry.magnitude[o]!);
    for (let i = 0; i < inFeatures; i++) {
      const value = Math.fround(acc[i]!);
      if (!Number.isFinite(value)) throw mergeError(`merged weight row ${o} overflows float32: adapter weights out of range?`);
      w[offset + i] = value;
    }
  }
}

/** The base's metadata plus provenance (replacing keys of an earlier merge, so merging a merged model works). */
function mergedMetadata(baseHeader: GgufFile, name: string | undefined, count: number): Array<[string, GgufMetadataValue]> {
  const entries = [...baseHeader.metadata.entries()].filter(([key]) => key !== MERGED_FROM_KEY && key !== MERGED_TENSORS_KEY);
  entries.push([MERGED_FROM_KEY, { type: "string", value: name ?? "" }]);
  entries.push([MERGED_TENSORS_KEY, { type: "uint32", value: count }]);
  return entries;
}

function encodeHeader(baseHeader: GgufFile, metadata: Array<[string, GgufMetadataValue]>): Buffer {
  const encoder = new GgufHeaderEncoder();
  encoder.u32(GGUF_MAGIC);
  encoder.u32(GGUF_VERSION);
  encoder.u64(baseHeader.tensors.length);
  encoder.u64(metadata.length);
  for (const [key, value] of metadata) {
    encoder.string(key);
    encoder.metadataValue(key, value);
  }
  for (const tensor of baseHeader.tensors) {
    encoder.string(tensor.name);
    encoder.u32(tensor.shape.length);
    for (const dim of tensor.shape) encoder.u64(dim);
    encoder.u32(tensor.typeId);
    encoder.u64(tensor.offset - baseHeader.dataOffset);
  }
  const alignment = baseHeader.alignment;
  encoder.zeros((alignment - (encoder.byteLength % alignment)) % alignment);
  return encoder.toBuffer();
}

const COPY_CHUNK = 1 << 20;
/** Elements per merged row block: bounds memory (a few MB) and the time between yields (a few ms). */
const BLOCK_ELEMENTS = 1 << 18;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Writes the merged model of `adapter` on the base at `basePath` (whose header is `baseHeader`) to `outPath`,
 * atomically: a refusal or failure leaves nothing at `outPath`. Throws LoraError for adapters that do not fit
 * the base (see planMergedModel) before anything is written.
 */
export async function writeMergedModel(
  adapter: Adapter,
  basePath: string,
  baseHeader: GgufFile,
  outPath: string,
  options: MergedModelOptions = {},
): Promise<MergedModelSummary> {
  const plan = planMergedModel(adapter, baseHeader, options.weight ?? 1);
  const header = encodeHeader(baseHeader, mergedMetadata(baseHeader, options.name, plan.size));
  const shift = header.length - baseHeader.dataOffset;
  const source = await open(basePath, "r");
  let bytes = 0;
  try {
    const { size } = await source.stat();
    const readExactly = async (length: number, position: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      for (let filled = 0; filled < length; ) {
        const { bytesRead } = await source.read(buffer, filled, length - filled, position + filled);
        if (bytesRead === 0) throw new GgufError(`${basePath} shrank while it was read`);
        filled += bytesRead;
      }
      return buffer;
    };
    // Adapted tensors by offset, so the data section is copied in one pass with them spliced in.
    const merged = [...plan.values()].sort((x, y) => x.info.offset - y.info.offset);
    await writeFileAtomically(outPath, async (output) => {
      const write = async (buffer: Uint8Array, position: number) => {
        for (let done = 0; done < buffer.length; ) {
          done += (await output.write(buffer, done, buffer.length - done, position + done)).bytesWritten;
        }
      };
      await write(header, 0);
      const copy = async (from: number, to: number) => {
        for (let at = from; at < to; at += COPY_CHUNK) {
          options.signal?.throwIfAborted();
          const length = Math.min(COPY_CHUNK, to - at);
          await write(await readExactly(length, at), at + shift);
        }
      };
      let cursor = baseHeader.dataOffset;
      for (const entry of merged) {
        await copy(cursor, entry.info.offset);
        await writeMergedTensor(entry, readExactly, (buffer, at) => write(buffer, at + shift), options);
        cursor = entry.info.offset + entry.info.byteLength;
      }
      await copy(cursor, size);
      bytes = size + shift;
    });
  } finally {
    await source.close();
  }
  return { mergedTensors: plan.size, bytes };
}

async function writeMergedTensor(
  entry: MergePlanEntry,
  read: (length: number, position: number) => Promise<Buffer>,
  write: (buffer: Uint8Array, position: number) => Promise<void>,
  { rowsPerBlock, signal }: MergedModelOptions,
): Promise<void> {
  const { info, module } = entry;
  const bytesPerValue = info.type === "F32" ? 4 : 2;
  const rowBytes = module.inFeatures * bytesPerValue;
  const blockRows = Math.max(1, rowsPerBlock ?? Math.floor(BLOCK_ELEMENTS / module.inFeatures));
  for (let first = 0; first < module.outFeatures; first += blockRows) {
    signal?.throwIfAborted();
    const rows = Math.min(blockRows, module.outFeatures - first);
    const position = info.offset + first * rowBytes;
    const raw = await read(rows * rowBytes, position);
    // Fresh buffers from Buffer.alloc are 8-byte aligned at offset 0, so typed views are safe.
    const values =
      info.type === "F32"
        ? new Float32Array(raw.buffer, raw.byteOffset, rows * module.inFeatures)
        : float16BitsToFloat32Array(new Uint16Array(raw.buffer, raw.byteOffset, rows * module.inFeatures));
    addDeltaRows(values, entry, first, rows);
    const out = info.type === "F32" ? values : float32ArrayToFloat16Bits(values);
    if (out instanceof Uint16Array && out.some((bits) => (bits & 0x7c00) === 0x7c00)) {
      throw mergeError(`${info.name}: a merged weight overflows F16 (|w| > 65504): adapter weights out of range?`);
    }
    await write(new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position);
    await yieldToEventLoop();
  }
}
