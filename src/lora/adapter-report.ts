import { moduleScale, type Adapter } from "./adapter.js";
import type { LoriVariant } from "./adapter-config.js";
import { analyzeInterference } from "./interference.js";
import { maskPopcount } from "./mask.js";
import { adapterLayouts, layoutSizeReport } from "./size-report.js";
import type { TargetModule } from "./target-modules.js";

/**
 * What `lori-server inspect` shows: per-module structure and sizes of one adapter, or the interference
 * between two. Pure functions over in-memory adapters; the caller supplies the on-disk size.
 */

export interface ModuleReport {
  readonly layer: number;
  readonly module: TargetModule;
  readonly rank: number;
  readonly alpha: number;
  /** PEFT's factor on B A: alpha / r (or alpha / sqrt(r) with rsLoRA). */
  readonly scale: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly a: "seeded" | "stored";
  /** Fraction of B entries outside the mask (0 when B is dense). */
  readonly sparsity: number;
  readonly trainableParams: number;
}

export interface AdapterReport {
  readonly variant: LoriVariant;
  readonly useRslora: boolean;
  readonly seed: number | null;
  readonly modules: number;
  readonly ranks: { readonly min: number; readonly max: number };
  readonly sparsity: number;
  readonly trainableParams: number;
  /** What plain LoRA at the same ranks trains: sum r(in + out). */
  readonly loraParams: number;
  /** adapter_model.safetensors as stored. */
  readonly bytesOnDisk: number;
  /** The same modules as a PEFT file with dense F16 A and B. */
  readonly denseFp16PeftBytes: number;
  readonly ratioToDenseFp16: number;
  readonly baseModel: string | null;
  readonly baseFingerprint: { readonly architecture: string; readonly sha256: string } | null;
  readonly lineage: readonly unknown[];
  readonly perModule: readonly ModuleReport[];
}

/** Trainable parameters as the paper counts them: LoRA trains A and B, LoRI-D only B, LoRI-S only the kept B. */
function trainable(variant: LoriVariant, rank: number, inFeatures: number, outFeatures: number, kept: number | undefined): number {
  return variant === "lora" ? rank * (inFeatures + outFeatures) : (kept ?? rank * outFeatures);
}

export function describeAdapter(adapter: Adapter, bytesOnDisk: number): AdapterReport {
  const lori = adapter.config.lori;
  const variant = lori?.variant ?? "lora";
  const perModule = adapter.modules.map((m): ModuleReport => {
    const kept = m.mask ? maskPopcount(m.mask, m.b.length) : undefined;
    return {
      layer: m.layer,
      module: m.module,
      rank: m.rank,
      alpha: m.alpha,
      scale: moduleScale(m, adapter.config.use_rslora),
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      a: m.a.kind === "seeded" ? "seeded" : "stored",
      sparsity: kept === undefined ? 0 : 1 - kept / m.b.length,
      trainableParams: trainable(variant, m.rank, m.inFeatures, m.outFeatures, kept),
    };
  });
  const sizes = layoutSizeReport(adapterLayouts(adapter), variant, "F16");
  const ranks = adapter.modules.map((m) => m.rank);
  const fp = lori?.base_fingerprint ?? null;
  return {
    variant,
    useRslora: adapter.config.use_rslora,
    seed: lori?.a_init?.seed ?? null,
    modules: adapter.modules.length,
    ranks: { min: Math.min(...ranks), max: Math.max(...ranks) },
    sparsity: lori?.sparsity ?? 0,
    trainableParams: perModule.reduce((n, m) => n + m.trainableParams, 0),
    loraParams: sizes.loraParams,
    bytesOnDisk,
    denseFp16PeftBytes: sizes.denseFp16PeftBytes,
    ratioToDenseFp16: bytesOnDisk / sizes.denseFp16PeftBytes,
    baseModel: adapter.config.base_model_name_or_path,
    baseFingerprint: fp ? { architecture: fp.architecture, sha256: fp.sha256 } : null,
    lineage: lori?.lineage ?? [],
    perModule,
  };
}

export interface Summary {
  readonly min: number;
  readonly mean: number;
  readonly max: number;
}

function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  return { min: Math.min(...values), mean: values.reduce((x, y) => x + y, 0) / values.length, max: Math.max(...values) };
}

export interface PairReport {
  readonly sharedModules: number;
  /** Jaccard overlap of B supports (mask, or B != 0) over all shared modules of equal rank. */
  readonly maskOverlap: number;
  /** Principal angles between A row spaces, degrees, over every shared module (90 = orthogonal). */
  readonly principalAnglesDeg: Summary | null;
  /** ||linear-merge cross terms|| / ||exact weighted sum||, global; null when undefined (unequal ranks...). */
  readonly crossTermRatio: number | null;
  readonly perModule: readonly {
    readonly layer: number;
    readonly module: TargetModule;
    readonly maskOverlap: number | null;
    readonly anglesDeg: Summary | null;
    readonly crossTermRatio: number | null;
  }[];
}

export function describePair(x: Adapter, y: Adapter, weights: readonly [number, number] = [1, 1]): PairReport {
  const report = analyzeInterference(x, y, weights);
  return {
    sharedModules: report.modules.length,
    maskOverlap: report.globalJaccard,
    principalAnglesDeg: summarize(report.modules.flatMap((m) => m.anglesDeg)),
    crossTermRatio: report.globalCrossTermRatio,
    perModule: report.modules.map((m) => ({
      layer: m.layer,
      module: m.module,
      maskOverlap: m.jaccard,
      anglesDeg: summarize(m.anglesDeg),
      crossTermRatio: m.crossTermRatio,
    })),
  };
}
