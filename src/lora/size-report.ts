import { sortModules, type Adapter } from "./adapter.js";
import type { LoriVariant } from "./adapter-config.js";
import { FILE_METADATA, moduleLayout, type ModuleLayoutInput } from "./adapter-layout.js";
import { keptSeed } from "./adapter-io.js";
import { maskPopcount } from "./mask.js";
import { planSafetensors, type SafetensorsTensorSpec } from "./safetensors.js";
import type { FloatDtype } from "./tensor-codec.js";

/**
 * Parameter counts and exact on-disk sizes, computed from the same layout code the writer uses (no tensor data
 * needed, so an 8B-shaped report costs only a header), compared with the same modules as a dense fp16 PEFT file.
 */

export interface SizeReport {
  readonly modules: number;
  /** Trainable: r(in+out) for LoRA, r*out for LoRI-D (A frozen), kept B entries for LoRI-S. */
  readonly trainableParams: number;
  /** What plain LoRA at the same ranks would train: sum r(in+out). */
  readonly loraParams: number;
  /** Exact size of adapter_model.safetensors as this server writes it. */
  readonly fileBytes: number;
  /** The same modules as a PEFT file with dense F16 lora_A and lora_B. */
  readonly denseFp16PeftBytes: number;
  readonly ratioToDenseFp16: number;
}

function fileBytes(layouts: readonly ModuleLayoutInput[], dtype: FloatDtype, metadata: Record<string, string>): number {
  const specs: SafetensorsTensorSpec[] = [];
  const meta = { ...metadata };
  for (const layout of sortModules(layouts)) {
    const { specs: s, metadata: m } = moduleLayout(layout, dtype);
    specs.push(...s);
    Object.assign(meta, m);
  }
  return planSafetensors(specs, meta).fileBytes;
}

export function layoutSizeReport(layouts: readonly ModuleLayoutInput[], variant: LoriVariant, dtype: FloatDtype): SizeReport {
  const trainable = (l: ModuleLayoutInput) =>
    variant === "lora" ? l.rank * (l.inFeatures + l.outFeatures) : (l.sparseCount ?? l.rank * l.outFeatures);
  const size = fileBytes(layouts, dtype, { ...FILE_METADATA });
  const dense = fileBytes(
    layouts.map(({ sparseCount: _ignored, ...l }) => ({ ...l, aStored: true })),
    "F16",
    { format: "pt" },
  );
  return {
    modules: layouts.length,
    trainableParams: layouts.reduce((n, l) => n + trainable(l), 0),
    loraParams: layouts.reduce((n, l) => n + l.rank * (l.inFeatures + l.outFeatures), 0),
    fileBytes: size,
    denseFp16PeftBytes: dense,
    ratioToDenseFp16: size / dense,
  };
}

/** The layout writeAdapterDir will use for this adapter (kept-seed A not stored; masked B stored sparse). */
export function adapterLayouts(adapter: Adapter): ModuleLayoutInput[] {
  const seed = keptSeed(adapter);
  return adapter.modules.map((m) => ({
    layer: m.layer,
    module: m.module,
    rank: m.rank,
    inFeatures: m.inFeatures,
    outFeatures: m.outFeatures,
    aStored: m.a.kind === "dense" || m.a.seed !== seed,
    ...(m.mask ? { sparseCount: maskPopcount(m.mask, m.b.length) } : {}),
  }));
}

export function adapterSizeReport(adapter: Adapter, dtype: FloatDtype = "F32"): SizeReport {
  return layoutSizeReport(adapterLayouts(adapter), adapter.config.lori?.variant ?? "lora", dtype);
}
