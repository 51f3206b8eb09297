import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AdapterBase } from "../../src/engine/adapters/adapter-validation.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { makeAdapter, type LoraModule } from "../../src/lora/adapter.js";
import { CONFIG_FILE, type WEIGHTS_FILE, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { baseFingerprintOfGguf, type BaseFingerprint } from "../../src/lora/base-fingerprint.js";
import { ALL_TARGET_MODULES, GGUF_TENSOR_STEM, TARGET_MODULES, type TargetModule } from "../../src/lora/target-modules.js";
import { createTinyModel, type TinyModelOptions } from "../../src/model/tiny-model.js";
import { rng } from "../lora/helpers.js";

/** A generated tiny llama GGUF (2 layers, embd 64, 4 heads, 2 KV heads, ff 128 unless overridden). */
export async function tinyBase(
  dir: string,
  name = "base.gguf",
  shape: Omit<TinyModelOptions, "out"> = {},
): Promise<AdapterBase & { path: string }> {
  const file = path.join(dir, name);
  await createTinyModel({ out: file, ...shape });
  const header = await readGgufFile(file);
  return { id: name.replace(/\.gguf$/, ""), path: file, header, fingerprint: baseFingerprintOfGguf(header) };
}

export interface ModuleOptions {
  readonly rank?: number;
  readonly seed?: number;
  /** Dense random A instead of seeded. */
  readonly denseA?: boolean;
  readonly bScale?: number;
}

/** One module shaped for `header`'s tensor `blk.{layer}.{module}` (in, out from the base). */
export function moduleFor(header: GgufFile, layer: number, module: TargetModule, options: ModuleOptions = {}): LoraModule {
  const tensor = header.tensors.find((t) => t.name === `blk.${layer}.${GGUF_TENSOR_STEM[module]}.weight`);
  if (!tensor) throw new Error(`no tensor for layer ${layer} ${module}`);
  const [inFeatures, outFeatures] = tensor.shape as [number, number];
  return sizedModule(layer, module, inFeatures, outFeatures, options);
}

export function sizedModule(
  layer: number,
  module: TargetModule,
  inFeatures: number,
  outFeatures: number,
  options: ModuleOptions = {},
): LoraModule {
  const rank = options.rank ?? 4;
  const random = rng((options.seed ?? 1) * 131 + layer * 7 + ALL_TARGET_MODULES.indexOf(module));
  const b = new Float32Array(outFeatures * rank).map(() => (random() * 2 - 1) * (options.bScale ?? 0.5));
  const a: LoraModule["a"] = options.denseA
    ? { kind: "dense", data: new Float32Array(rank * inFeatures).map(() => (random() * 2 - 1) / Math.sqrt(inFeatures)) }
    : { kind: "seeded", seed: options.seed ?? 1 };
  return { layer, module, rank, alpha: 2 * rank, inFeatures, outFeatures, a, b };
}

/** Every target module of every layer of the base. */
export function allModules(base: { header: GgufFile }, options: ModuleOptions = {}): LoraModule[] {
  const layers = Number(base.header.metadata.get("llama.block_count")?.value);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < layers; layer++) for (const m of TARGET_MODULES) modules.push(moduleFor(base.header, layer, m, options));
  return modules;
}

export async function writeModules(
  dir: string,
  modules: LoraModule[],
  fingerprint: BaseFingerprint | null,
  overwrite = false,
): Promise<string> {
  await writeAdapterDir(dir, makeAdapter(modules, { baseFingerprint: fingerprint, lineage: [{ op: "test-fixture" }] }), { overwrite });
  return dir;
}

/** A valid adapter for `base` in `dir`. */
export function writeGoodAdapter(
  dir: string,
  base: { header: GgufFile; fingerprint: BaseFingerprint },
  options: ModuleOptions = {},
): Promise<string> {
  return writeModules(dir, allModules(base, options), base.fingerprint);
}

/** `u64 LE header length | header JSON | data`, for hand-made (broken) safetensors. */
export function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  return Buffer.concat([prefix, json, Buffer.from(data)]);
}

export async function editConfig(dir: string, edit: (config: Record<string, any>) => void): Promise<void> {
  const file = path.join(dir, CONFIG_FILE);
  const config = JSON.parse(await readFile(file, "utf8")) as Record<string, any>;
  edit(config);
  await writeFile(file, JSON.stringify(config));
}

export async function replaceWith(
  dir: string,
  file: typeof CONFIG_FILE | typeof WEIGHTS_FILE,
  make: (target: string) => Promise<void>,
): Promise<void> {
  const target = path.join(dir, file);
  await rm(target, { recursive: true, force: true });
  await make(target);
}

export const symlinkTo = (pointee: string) => (target: string) => symlink(pointee, target);
export const fifo = () => async (target: string) => {
  execFileSync("mkfifo", [target]);
};
export const directory = () => async (target: string) => {
  await mkdir(target);
};
