import type { GgufFile } from "../gguf/gguf-types.js";
import { permuteRowsForRope, unpermuteRowsForRope } from "../model/llama-permute.js";
import type { LoraModule } from "../lora/adapter.js";
import { ARCHITECTURES, TRAINABLE_ARCHITECTURES, type RowOrder } from "../lora/architectures.js";
import { baseFingerprintOfGguf, ggufArchitecture, type BaseFingerprint } from "../lora/base-fingerprint.js";
import { maskBit, packMask } from "../lora/mask.js";
import { SafetensorsFile, writeSafetensors, type SafetensorsTensorData } from "../lora/safetensors.js";
import { GGUF_TENSOR_STEM, isProjectionModule, TARGET_MODULES, type ProjectionModule, type TargetModule } from "../lora/target-modules.js";
import { decodeFloats } from "../lora/tensor-codec.js";
import type { TrainMethod } from "./native-trainer.js";

/**
 * The bridge between our adapter model (PEFT names, q/k rows in HF order) and the native trainer's tensors
 * (`blk.{i}.{stem}.lora_b` [out, r], rows in the base GGUF's order, native/README.md). Where the architecture's
 * converter rope-permuted q/k rows (llama; src/lora/architectures.ts), q/k B rows and mask bits are permuted
 * with the base's n_head / n_head_kv going in and un-permuted coming out; qwen2/qwen3 rows are HF's already.
 * A is input-side and never permuted.
 */

/** What training needs from the base GGUF header. */
export interface BaseInfo {
  readonly architecture: string;
  readonly nLayer: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  /** How each module's GGUF rows relate to HF's (architecture table): "same" means no permutation. */
  rowOrder(module: TargetModule): RowOrder;
  readonly fingerprint: BaseFingerprint;
  /** [in, out] of `blk.{layer}.{stem}.weight` (ggml ne order). */
  shape(layer: number, module: TargetModule): [number, number];
}

function metadataInt(header: GgufFile, key: string): number | undefined {
  const v = header.metadata.get(key);
  if (!v || v.type === "array") return undefined;
  const n = typeof v.value === "bigint" ? Number(v.value) : v.value;
  return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : undefined;
}

export function baseInfo(header: GgufFile): BaseInfo {
  const architecture = ggufArchitecture(header);
  if (!TRAINABLE_ARCHITECTURES.includes(architecture)) {
    const supported = TRAINABLE_ARCHITECTURES.map((a) => `${a} (${ARCHITECTURES.get(a)!.families})`).join(", ");
    const servable = ARCHITECTURES.has(architecture) ? `; ${architecture} adapters can be imported, merged and served, not trained` : "";
    throw new Error(`the base architecture is '${architecture}'; training supports ${supported} only${servable}`);
  }
  const layout = ARCHITECTURES.get(architecture)!;
  const nHead = metadataInt(header, `${architecture}.attention.head_count`);
  if (nHead === undefined) throw new Error(`the base model has no ${architecture}.attention.head_count`);
  const nHeadKv = metadataInt(header, `${architecture}.attention.head_count_kv`) ?? nHead;
  const shapes = new Map(header.tensors.map((t) => [t.name, t.shape]));
  const nLayer =
    metadataInt(header, `${architecture}.block_count`) ?? header.tensors.filter((t) => /^blk\.\d+\.attn_q\.weight$/.test(t.name)).length;
  return {
    architecture,
    nLayer,
    nHead,
    nHeadKv,
    rowOrder: (module) => layout.modules[module]?.rows ?? "same",
    fingerprint: baseFingerprintOfGguf(header),
    shape(layer, module) {
      const name = `blk.${layer}.${GGUF_TENSOR_STEM[module]}.weight`;
      const s = shapes.get(name);
      if (s?.length !== 2) throw new Error(`the base model has no 2-D tensor ${name}`);
      return [s[0]!, s[1]!];
    },
  };
}

export const trainerTensorName = (layer: number, module: TargetModule, which: "lora_a" | "lora_b" | "lora_magnitude_vector") =>
  `blk.${layer}.${GGUF_TENSOR_STEM[module]}.${which}`;

/** The head count of the module's rope permutation, or null when its GGUF rows are in HF order. */
function permutationHeads(info: BaseInfo, module: TargetModule): number | null {
  const order = info.rowOrder(module);
  return order === "heads" ? info.nHead : order === "kv_heads" ? info.nHeadKv : null;
}

/** Rope permutation of [out, cols] rows for q/k where the architecture has one (llama); identity elsewhere. */
export function toGgufRows(info: BaseInfo, module: TargetModule, rows: Float32Array, out: number, cols: number): Float32Array {
  const heads = permutationHeads(info, module);
  return heads === null ? rows : permuteRowsForRope(rows, out, cols, heads);
}

export function toHfRows(info: BaseInfo, module: TargetModule, rows: Float32Array, out: number, cols: number): Float32Array {
  const heads = permutationHeads(info, module);
  return heads === null ? rows : unpermuteRowsForRope(rows, out, cols, heads);
}

/** Short trainer target names ("q", "gate", ...) <-> our module names. */
export const SHORT_TARGET: Readonly<Record<ProjectionModule, "q" | "k" | "v" | "o" | "gate" | "up" | "down">> = {
  q_proj: "q",
  k_proj: "k",
  v_proj: "v",
  o_proj: "o",
  gate_proj: "gate",
  up_proj: "up",
  down_proj: "down",
};

/** The trainer's name for a module; the fused (Phi-3) projections have none (baseInfo refuses phi3 first). */
export function shortTarget(module: TargetModule): (typeof SHORT_TARGET)[ProjectionModule] {
  if (!isProjectionModule(module)) throw new Error(`the native trainer cannot train the fused module ${module}`);
  return SHORT_TARGET[module];
}

export function moduleFromShort(short: string): TargetModule | undefined {
  return TARGET_MODULES.find((m) => SHORT_TARGET[m] === short);
}

/** A per-module [out, r] matrix (B or a 0/1 mask), HF row order. */
export interface ModuleMatrix {
  readonly layer: number;
  readonly module: TargetModule;
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/**
 * Writes [out, r] matrices (HF order) as trainer `lora_b` tensors (GGUF order): init_b files and masks. `denseA`
 * ([r, in] by "layer.module", input-side so never permuted) adds `lora_a` tensors: the init A of a continued LoRA.
 */
export async function writeTrainerMatrices(
  path: string,
  info: BaseInfo,
  matrices: readonly ModuleMatrix[],
  denseA: ReadonlyMap<string, Float32Array> = new Map(),
): Promise<void> {
  const tensors: SafetensorsTensorData[] = [];
  for (const m of matrices) {
    tensors.push({
      name: trainerTensorName(m.layer, m.module, "lora_b"),
      dtype: "F32",
      shape: [m.rows, m.cols],
      data: toGgufRows(info, m.module, m.data, m.rows, m.cols),
    });
    const a = denseA.get(`${m.layer}.${m.module}`);
    if (a)
      tensors.push({ name: trainerTensorName(m.layer, m.module, "lora_a"), dtype: "F32", shape: [m.cols, a.length / m.cols], data: a });
  }
  await writeSafetensors(path, tensors);
}

/** The trainer's output adapter, back in HF order: B per module, plus A for `lora` and `dora`, m for `dora`. */
export interface TrainedTensors {
  readonly b: ModuleMatrix[];
  readonly a: Map<string, Float32Array>;
  /** DoRA: m [out] per "layer.module", HF row order (q/k rows un-permuted like B's). */
  readonly magnitude: Map<string, Float32Array>;
  readonly metadata: Readonly<Record<string, string>>;
}

export async function readTrainerOutput(
  path: string,
  info: BaseInfo,
  targets: readonly TargetModule[],
  rank: number,
): Promise<TrainedTensors> {
  const file = await SafetensorsFile.open(path);
  try {
    const b: ModuleMatrix[] = [];
    const a = new Map<string, Float32Array>();
    const magnitude = new Map<string, Float32Array>();
    for (let layer = 0; layer < info.nLayer; layer++) {
      for (const module of targets) {
        const [inFeatures, out] = info.shape(layer, module);
        const bName = trainerTensorName(layer, module, "lora_b");
        if (!file.tensors.has(bName)) throw new Error(`${path}: trainer output lacks ${bName}`);
        const raw = decodeFloats(file.info(bName).dtype, await file.readBytes(bName), bName);
        if (raw.length !== out * rank) throw new Error(`${path}: ${bName} has ${raw.length} values, expected ${out}x${rank}`);
        b.push({ layer, module, rows: out, cols: rank, data: toHfRows(info, module, raw, out, rank) });
        const aName = trainerTensorName(layer, module, "lora_a");
        if (file.tensors.has(aName)) {
          const aData = decodeFloats(file.info(aName).dtype, await file.readBytes(aName), aName);
          if (aData.length !== rank * inFeatures) throw new Error(`${path}: ${aName} has ${aData.length} values`);
          a.set(`${layer}.${module}`, aData);
        }
        const mName = trainerTensorName(layer, module, "lora_magnitude_vector");
        if (file.tensors.has(mName)) {
          const m = decodeFloats(file.info(mName).dtype, await file.readBytes(mName), mName);
          if (m.length !== out) throw new Error(`${path}: ${mName} has ${m.length} values, expected ${out}`);
          magnitude.set(`${layer}.${module}`, toHfRows(info, module, m, out, 1));
        }
      }
    }
    return { b, a, magnitude, metadata: file.metadata };
  } finally {
    await file.close();
  }
}

/**
 * Our adapter modules from the trainer's output: A dense for lora and dora (seeded from `seed` otherwise), the
 * LoRI-S masks given, and DoRA's magnitudes (which a dora run must have for every module).
 */
export function adapterModulesOf(
  trained: TrainedTensors,
  info: BaseInfo,
  spec: { method: TrainMethod; rank: number; alpha: number; seed: number; masks?: ReadonlyMap<string, Uint8Array> | undefined },
): LoraModule[] {
  const denseA = spec.method === "lora" || spec.method === "dora";
  return trained.b.map((b) => {
    const key = `${b.layer}.${b.module}`;
    const a = trained.a.get(key);
    const mask = spec.masks?.get(key);
    const magnitude = spec.method === "dora" ? trained.magnitude.get(key) : undefined;
    if (spec.method === "dora" && !magnitude) throw new Error(`the trainer's DoRA output lacks the magnitude of layer ${key}`);
    return {
      layer: b.layer,
      module: b.module,
      rank: spec.rank,
      alpha: spec.alpha,
      inFeatures: info.shape(b.layer, b.module)[0],
      outFeatures: b.rows,
      a: denseA && a ? { kind: "dense", data: a } : { kind: "seeded", seed: spec.seed },
      b: b.data,
      ...(mask ? { mask } : {}),
      ...(magnitude ? { magnitude } : {}),
    };
  });
}

/** B of an adapter's modules as matrices (HF order), for init_b and mask selection. */
export function modulesAsMatrices(modules: readonly LoraModule[]): ModuleMatrix[] {
  return modules.map((m) => ({ layer: m.layer, module: m.module, rows: m.outFeatures, cols: m.rank, data: m.b }));
}

/**
 * LoRI mask calibration: keep the global top-k |B| over all matrices together, k = floor((1 - sparsity) * N).
 * Ties at the threshold are broken by position (module order, then row-major), so the result is deterministic
 * and keeps exactly k entries. Returns 0/1 matrices in the same order and shapes.
 */
export function topKMask(matrices: readonly ModuleMatrix[], sparsity: number): ModuleMatrix[] {
  if (!(sparsity >= 0 && sparsity < 1)) throw new RangeError(`sparsity must be in [0, 1), got ${sparsity}`);
  const total = matrices.reduce((n, m) => n + m.data.length, 0);
  const k = Math.floor((1 - sparsity) * total);
  const all = new Float32Array(total);
  let offset = 0;
  for (const m of matrices) {
    for (let i = 0; i < m.data.length; i++) all[offset + i] = Math.abs(m.data[i]!);
    offset += m.data.length;
  }
  // NaN never reaches here (the trainer refuses non-finite losses); sorted descending, the k-th value is the cut.
  const sorted = Float32Array.from(all).sort().reverse();
  const threshold = k > 0 ? sorted[k - 1]! : Infinity;
  let above = 0;
  for (const v of all) if (v > threshold) above++;
  let tiesLeft = k - above;
  offset = 0;
  return matrices.map((m) => {
    const data = new Float32Array(m.data.length);
    for (let i = 0; i < data.length; i++) {
      const v = all[offset + i]!;
      if (v > threshold) data[i] = 1;
      else if (v === threshold && tiesLeft > 0) {
        tiesLeft--;
        data[i] = 1;
      }
    }
    offset += m.data.length;
    return { ...m, data };
  });
}

export function packMatrixMask(m: ModuleMatrix): Uint8Array {
  return packMask(m.data);
}

/** 0/1 matrix of a module's packed mask (or all ones when dense). */
export function maskMatrix(m: LoraModule): ModuleMatrix {
  const n = m.outFeatures * m.rank;
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = !m.mask || maskBit(m.mask, i) ? 1 : 0;
  return { layer: m.layer, module: m.module, rows: m.outFeatures, cols: m.rank, data };
}
