import { LoraError } from "./errors.js";
import { maskByteLength } from "./mask.js";
import type { SafetensorsTensorSpec } from "./safetensors.js";
import type { FloatDtype } from "./tensor-codec.js";
import { isTargetModule, MODULE_PARENT, type TargetModule } from "./target-modules.js";

/**
 * Tensor names and shapes inside adapter_model.safetensors (docs/adapter-format.md). Both the writer and the
 * size report build their tensor lists here, so reported sizes are the sizes the writer produces.
 *
 * Per module, with P = base_model.model.model.layers.{i}.{self_attn|mlp}.{module}:
 *   P.lora_A.weight  [r, in]             unless A is seeded (then __metadata__["P.lora_A.shape"] = "[r,in]")
 *   P.lora_B.weight  [out, r]            dense B, or for sparse B:
 *   P.lora_B.mask    U8 [ceil(out*r/8)]  bit-packed, LSB first, row-major over [out, r]
 *   P.lora_B.values  [popcount(mask)]    B at the set bits, row-major order; __metadata__["P.lora_B.shape"] = "[out,r]"
 *   P.lora_magnitude_vector  [out]       DoRA only (PEFT's name): the magnitude m of each output row
 */

export function peftPrefix(layer: number, module: TargetModule): string {
  return `base_model.model.model.layers.${layer}.${MODULE_PARENT[module]}.${module}`;
}

export type TensorRole = "lora_A.weight" | "lora_B.weight" | "lora_B.mask" | "lora_B.values" | "lora_magnitude_vector";

const NAME_PATTERN =
  /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.(lora_A\.weight|lora_B\.weight|lora_B\.mask|lora_B\.values|lora_magnitude_vector)$/;

export function parseTensorName(name: string): { layer: number; module: TargetModule; role: TensorRole } | null {
  const match = NAME_PATTERN.exec(name);
  if (!match) return null;
  const [, layer, parent, module, role] = match as unknown as [string, string, string, string, TensorRole];
  if (!isTargetModule(module) || MODULE_PARENT[module] !== parent) return null;
  return { layer: Number(layer), module, role };
}

export const shapeMetadataKey = (layer: number, module: TargetModule, matrix: "lora_A" | "lora_B") =>
  `${peftPrefix(layer, module)}.${matrix}.shape`;

/** Parses "[a,b]" shape metadata written by `moduleLayout`. */
export function parseShapeMetadata(value: string | undefined, what: string): [number, number] {
  let parsed: unknown;
  try {
    parsed = value === undefined ? undefined : JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || !parsed.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new LoraError("ADAPTER_BAD_TENSORS", `${what}: missing or invalid shape metadata ${JSON.stringify(value)}`);
  }
  return parsed as [number, number];
}

/** What the layout of one module depends on (no tensor data). */
export interface ModuleLayoutInput {
  readonly layer: number;
  readonly module: TargetModule;
  readonly rank: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly aStored: boolean;
  /** Number of kept B entries when B is stored sparse; undefined for dense B. */
  readonly sparseCount?: number;
  /** DoRA: a magnitude vector [out] is stored. */
  readonly dora?: boolean;
}

export interface ModuleLayout {
  readonly specs: SafetensorsTensorSpec[];
  readonly metadata: Record<string, string>;
}

export function moduleLayout(input: ModuleLayoutInput, dtype: FloatDtype): ModuleLayout {
  const { layer, module, rank, inFeatures, outFeatures } = input;
  const prefix = peftPrefix(layer, module);
  const specs: SafetensorsTensorSpec[] = [];
  const metadata: Record<string, string> = {};
  if (input.aStored) specs.push({ name: `${prefix}.lora_A.weight`, dtype, shape: [rank, inFeatures] });
  else metadata[shapeMetadataKey(layer, module, "lora_A")] = JSON.stringify([rank, inFeatures]);
  if (input.sparseCount === undefined) {
    specs.push({ name: `${prefix}.lora_B.weight`, dtype, shape: [outFeatures, rank] });
  } else {
    specs.push({ name: `${prefix}.lora_B.mask`, dtype: "U8", shape: [maskByteLength(outFeatures * rank)] });
    specs.push({ name: `${prefix}.lora_B.values`, dtype, shape: [input.sparseCount] });
    metadata[shapeMetadataKey(layer, module, "lora_B")] = JSON.stringify([outFeatures, rank]);
  }
  if (input.dora) specs.push({ name: `${prefix}.lora_magnitude_vector`, dtype, shape: [outFeatures] });
  return { specs, metadata };
}

/** File-level metadata: PEFT's loaders expect format "pt"; the version lets future readers branch. */
export const FILE_METADATA: Readonly<Record<string, string>> = { format: "pt", "lori.format_version": "1" };
