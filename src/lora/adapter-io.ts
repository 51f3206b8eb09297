import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { deriveConfig, hfModuleName, materializeA, sortModules, validateModule, type Adapter, type LoraModule } from "./adapter.js";
import { parseAdapterConfig, resolvePattern, type AdapterConfig } from "./adapter-config.js";
import {
  FILE_METADATA,
  moduleLayout,
  parseShapeMetadata,
  parseTensorName,
  peftPrefix,
  shapeMetadataKey,
  type TensorRole,
} from "./adapter-layout.js";
import { LoraError } from "./errors.js";
import { maskBit, maskPopcount } from "./mask.js";
import { readRegularFile } from "./regular-file.js";
import { SafetensorsFile, writeSafetensors, type SafetensorsTensorData } from "./safetensors.js";
import { decodeFloats, encodeFloats, type FloatDtype } from "./tensor-codec.js";
import type { TargetModule } from "./target-modules.js";

export const CONFIG_FILE = "adapter_config.json";
export const WEIGHTS_FILE = "adapter_model.safetensors";

const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Adapter names become directory names under adapters/: refuse anything that could escape or hide. */
export function validateAdapterName(name: string): void {
  const why =
    name.length === 0
      ? "is empty"
      : name.length > 64
        ? "is longer than 64 characters"
        : name.startsWith(".")
          ? "starts with a dot"
          : name.includes("..")
            ? "contains '..'"
            : !NAME_PATTERN.test(name)
              ? "may only contain letters, digits, '.', '_' and '-'"
              : null;
  if (why) throw new LoraError("ADAPTER_BAD_NAME", `adapter name ${JSON.stringify(name)} ${why}`);
}

type Group = Partial<Record<TensorRole, string>>;

async function readFloats(file: SafetensorsFile, name: string): Promise<Float32Array> {
  return decodeFloats(file.info(name).dtype, await file.readBytes(name), `${file.path}: tensor '${name}'`);
}

async function readModule(
  file: SafetensorsFile,
  config: AdapterConfig,
  layer: number,
  module: TargetModule,
  group: Group,
): Promise<LoraModule> {
  const where = `${file.path}: ${peftPrefix(layer, module)}`;
  const bad = (detail: string): never => {
    throw new LoraError("ADAPTER_BAD_TENSORS", `${where}: ${detail}`);
  };
  let outFeatures: number;
  let rank: number;
  let b: Float32Array;
  let mask: Uint8Array | undefined;
  if (group["lora_B.weight"] !== undefined) {
    if (group["lora_B.mask"] !== undefined || group["lora_B.values"] !== undefined) bad("has both dense and sparse B");
    const shape = file.info(group["lora_B.weight"]).shape;
    if (shape.length !== 2) bad(`lora_B.weight has shape [${shape}], expected [out, r]`);
    [outFeatures, rank] = shape as [number, number];
    b = await readFloats(file, group["lora_B.weight"]);
  } else if (group["lora_B.mask"] !== undefined && group["lora_B.values"] !== undefined) {
    [outFeatures, rank] = parseShapeMetadata(file.metadata[shapeMetadataKey(layer, module, "lora_B")], `${where}.lora_B`);
    if (file.info(group["lora_B.mask"]).dtype !== "U8") bad("lora_B.mask must be U8");
    mask = await file.readBytes(group["lora_B.mask"]);
    const values = await readFloats(file, group["lora_B.values"]);
    const elements = outFeatures * rank;
    if (mask.length !== Math.ceil(elements / 8))
      bad(`lora_B.mask has ${mask.length} bytes, [${outFeatures}, ${rank}] needs ${Math.ceil(elements / 8)}`);
    const kept = maskPopcount(mask, elements);
    if (values.length !== kept) bad(`lora_B.values has ${values.length} entries but the mask keeps ${kept}`);
    b = new Float32Array(elements);
    for (let i = 0, v = 0; i < elements; i++) if (maskBit(mask, i)) b[i] = values[v++]!;
  } else {
    return bad("has no lora_B (neither .weight nor .mask + .values)");
  }
  let a: LoraModule["a"];
  let inFeatures: number;
  if (group["lora_A.weight"] !== undefined) {
    const shape = file.info(group["lora_A.weight"]).shape;
    if (shape.length !== 2 || shape[0] !== rank) bad(`lora_A.weight has shape [${shape}], expected [${rank}, in]`);
    inFeatures = shape[1]!;
    a = { kind: "dense", data: await readFloats(file, group["lora_A.weight"]) };
  } else {
    const seed = config.lori?.a_init?.seed;
    if (seed === undefined) return bad("has no lora_A.weight and the config has no lori.a_init seed");
    const [r, inF] = parseShapeMetadata(file.metadata[shapeMetadataKey(layer, module, "lora_A")], `${where}.lora_A`);
    if (r !== rank) bad(`seeded lora_A rank ${r} differs from lora_B rank ${rank}`);
    inFeatures = inF;
    a = { kind: "seeded", seed };
  }
  const name = hfModuleName(layer, module);
  const configRank = resolvePattern(config.rank_pattern, name) ?? config.r;
  if (configRank !== rank) bad(`tensors have rank ${rank} but the config says ${configRank}`);
  const alpha = resolvePattern(config.alpha_pattern, name) ?? config.lora_alpha;
  // DoRA: use_dora and the magnitude vectors go together (PEFT writes both).
  let magnitude: Float32Array | undefined;
  if (group.lora_magnitude_vector !== undefined) {
    if (!config.use_dora) bad("has a lora_magnitude_vector (DoRA) but the config's use_dora is false");
    magnitude = await readFloats(file, group.lora_magnitude_vector);
  } else if (config.use_dora) {
    bad("has no lora_magnitude_vector but the config says use_dora: true (a DoRA adapter needs one per module)");
  }
  const result: LoraModule = {
    layer,
    module,
    rank,
    alpha,
    inFeatures,
    outFeatures,
    a,
    b,
    ...(mask ? { mask } : {}),
    ...(magnitude ? { magnitude } : {}),
  };
  validateModule(result);
  return result;
}

/** adapter_config.json is a few hundred bytes; anything past this is not a config. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/**
 * adapter_model.safetensors past this is not a plausible adapter: a rank-64 adapter on every projection of a
 * 70B model is about 1.6 GB in F32. The whole file is read into memory once (hash and parse the same bytes).
 */
export const MAX_WEIGHTS_BYTES = 2 * 1024 * 1024 * 1024;

export interface ReadAdapterOptions {
  /** Follow symlinks named adapter_config.json / adapter_model.safetensors. Default true (the CLI on a user's own files); the server refuses them. */
  readonly followSymlinks?: boolean;
  /** Default MAX_WEIGHTS_BYTES. */
  readonly maxWeightsBytes?: number;
}

/** The two files of an adapter directory, read once each (regular files only, size-bounded), and their hash. */
export interface AdapterSnapshot {
  readonly configBytes: Buffer;
  readonly weightsBytes: Buffer;
  /** sha256 over the config bytes then the weights bytes: the adapter's content identity. */
  readonly hash: string;
}

export function snapshotHash(configBytes: Uint8Array, weightsBytes: Uint8Array): string {
  return createHash("sha256").update(configBytes).update(weightsBytes).digest("hex");
}

export async function readAdapterSnapshot(dir: string, options: ReadAdapterOptions = {}): Promise<AdapterSnapshot> {
  const configBytes = await readConfigBytes(dir, options);
  const weightsBytes = await readWeightsBytes(dir, options);
  return { configBytes, weightsBytes, hash: snapshotHash(configBytes, weightsBytes) };
}

function readConfigBytes(dir: string, options: ReadAdapterOptions): Promise<Buffer> {
  return readRegularFile(join(dir, CONFIG_FILE), { maxBytes: MAX_CONFIG_BYTES, followSymlinks: options.followSymlinks ?? true }).catch(
    (error: unknown) => {
      if (error instanceof LoraError) throw new LoraError("ADAPTER_BAD_CONFIG", error.message);
      throw error;
    },
  );
}

function readWeightsBytes(dir: string, options: ReadAdapterOptions): Promise<Buffer> {
  return readRegularFile(join(dir, WEIGHTS_FILE), {
    maxBytes: options.maxWeightsBytes ?? MAX_WEIGHTS_BYTES,
    followSymlinks: options.followSymlinks ?? true,
  });
}

/** Parses adapter_config.json bytes. The JSON parser's own message is never passed on: it quotes the input. */
export function parseAdapterConfigBytes(bytes: Uint8Array, source: string): AdapterConfig {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch {
    throw new LoraError("ADAPTER_BAD_CONFIG", `${source}: not valid JSON`);
  }
  return parseAdapterConfig(json, source);
}

/** Parses an adapter from its two files' bytes; `where` names it in messages (a name, not a server path). */
export async function parseAdapterBytes(configBytes: Uint8Array, weightsBytes: Uint8Array, where: string): Promise<Adapter> {
  const config = parseAdapterConfigBytes(configBytes, `${where}/${CONFIG_FILE}`);
  const file = await SafetensorsFile.fromBytes(`${where}/${WEIGHTS_FILE}`, weightsBytes);
  return parseAdapterTensors(config, file);
}

/** Reads `adapter_config.json` + `adapter_model.safetensors` from a directory (PEFT or LoRI layout). */
export async function readAdapterDir(dir: string, options: ReadAdapterOptions = {}): Promise<Adapter> {
  // The config first: a broken config is reported as such even when the weights are missing too.
  const config = parseAdapterConfigBytes(await readConfigBytes(dir, options), join(dir, CONFIG_FILE));
  const weightsBytes = await readWeightsBytes(dir, options);
  return parseAdapterTensors(config, await SafetensorsFile.fromBytes(join(dir, WEIGHTS_FILE), weightsBytes));
}

async function parseAdapterTensors(config: AdapterConfig, file: SafetensorsFile): Promise<Adapter> {
  try {
    const groups = new Map<string, { layer: number; module: TargetModule; group: Group }>();
    for (const name of file.tensors.keys()) {
      const parsed = parseTensorName(name);
      if (!parsed) throw new LoraError("ADAPTER_UNSUPPORTED", `${file.path}: unsupported tensor '${name}'`);
      const key = `${parsed.layer}.${parsed.module}`;
      const entry = groups.get(key) ?? { layer: parsed.layer, module: parsed.module, group: {} };
      entry.group[parsed.role] = name;
      groups.set(key, entry);
    }
    if (groups.size === 0) throw new LoraError("ADAPTER_BAD_TENSORS", `${file.path}: no LoRA tensors`);
    const modules: LoraModule[] = [];
    for (const { layer, module, group } of groups.values()) modules.push(await readModule(file, config, layer, module, group));
    return { config, modules: sortModules(modules) };
  } finally {
    await file.close();
  }
}

export interface WriteAdapterOptions {
  /** Dtype of stored A, dense B and sparse B values. Default "F32" (lossless). */
  readonly dtype?: FloatDtype;
  /** Replace an existing adapter directory. Default false (fails with ADAPTER_EXISTS). */
  readonly overwrite?: boolean;
}

/**
 * The config records one seed: the config's own if some module uses it, else the first module's. Modules with
 * any other seed get their A stored densely on write.
 */
export function keptSeed(adapter: Adapter): number | undefined {
  const seeds = adapter.modules.flatMap((m) => (m.a.kind === "seeded" ? [m.a.seed] : []));
  const configured = adapter.config.lori?.a_init?.seed;
  return configured !== undefined && seeds.includes(configured) ? configured : seeds[0];
}

function unifySeeds(adapter: Adapter): LoraModule[] {
  const seed = keptSeed(adapter);
  return adapter.modules.map((m) =>
    m.a.kind === "seeded" && m.a.seed !== seed ? { ...m, a: { kind: "dense", data: materializeA(m) } } : m,
  );
}

/** Encodes an adapter's tensors (module order, then A, B) and file metadata. */
export function encodeAdapterTensors(
  modules: readonly LoraModule[],
  dtype: FloatDtype,
): { tensors: SafetensorsTensorData[]; metadata: Record<string, string> } {
  const tensors: SafetensorsTensorData[] = [];
  const metadata: Record<string, string> = { ...FILE_METADATA };
  for (const m of sortModules(modules)) {
    const values = m.mask ? m.b.filter((_, i) => maskBit(m.mask!, i)) : undefined;
    const layout = moduleLayout(
      { ...m, aStored: m.a.kind === "dense", dora: m.magnitude !== undefined, ...(values ? { sparseCount: values.length } : {}) },
      dtype,
    );
    Object.assign(metadata, layout.metadata);
    for (const spec of layout.specs) {
      const role = spec.name.slice(peftPrefix(m.layer, m.module).length + 1) as TensorRole;
      const data =
        role === "lora_A.weight"
          ? encodeFloats(materializeA(m), dtype)
          : role === "lora_B.weight"
            ? encodeFloats(m.b, dtype)
            : role === "lora_B.mask"
              ? m.mask!
              : role === "lora_magnitude_vector"
                ? encodeFloats(m.magnitude!, dtype)
                : encodeFloats(values!, dtype);
      tensors.push({ ...spec, data });
    }
  }
  return { tensors, metadata };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Writes an adapter directory atomically: everything goes into a temp directory beside `dir`, which is then
 * renamed into place, so readers see the old adapter, the new one, or none; never half of one.
 */
export async function writeAdapterDir(dir: string, adapter: Adapter, options: WriteAdapterOptions = {}): Promise<void> {
  const modules = unifySeeds(adapter);
  modules.forEach(validateModule);
  const config = deriveConfig(adapter.config, modules);
  const { tensors, metadata } = encodeAdapterTensors(modules, options.dtype ?? "F32");
  await writeAdapterFiles(dir, config, tensors, metadata, options.overwrite ?? false);
}

/**
 * Writes `adapter_config.json` + `adapter_model.safetensors` into a temp directory beside `dir`, then
 * renames it into place (an existing one is moved aside first when `overwrite`), so nobody ever sees half an
 * adapter. Refuses an existing `dir` unless `overwrite`.
 */
export async function writeAdapterFiles(
  dir: string,
  config: unknown,
  tensors: Parameters<typeof writeSafetensors>[1],
  metadata: Record<string, string>,
  overwrite: boolean,
): Promise<void> {
  if (!overwrite && (await exists(dir))) throw new LoraError("ADAPTER_EXISTS", `${dir} already exists`);
  const tag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const temp = join(dirname(dir), `.${basename(dir)}.${tag}.tmp`);
  await mkdir(dirname(dir), { recursive: true });
  await mkdir(temp);
  try {
    await writeFile(join(temp, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`, { flush: true });
    await writeSafetensors(join(temp, WEIGHTS_FILE), tensors, metadata);
    if (await exists(dir)) {
      if (!overwrite) throw new LoraError("ADAPTER_EXISTS", `${dir} already exists`);
      const old = join(dirname(dir), `.${basename(dir)}.${tag}.old`);
      await rename(dir, old);
      await rename(temp, dir);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(temp, dir);
    }
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}
