import { deriveConfig, materializeA, sortModules, type Adapter, type LoraModule } from "./adapter.js";
import { keptSeed, writeAdapterFiles } from "./adapter-io.js";
import { peftPrefix } from "./adapter-layout.js";
import type { SafetensorsTensorData } from "./safetensors.js";
import { encodeFloats } from "./tensor-codec.js";

/**
 * Exports an adapter as a dense PEFT LoRA directory: every A materialised, B dense, both F32, PEFT tensor names,
 * and an adapter_config.json with PEFT's LoraConfig fields plus the adapter's `lori` block (variant, sparsity,
 * the A seed, lineage). PEFT 0.13 and later drop config keys they do not know, with a warning; the block is
 * what lets `import` turn the dense A back into its seed and B's zeros back into the LoRI-S mask, so the round
 * trip restores the stored size. `lori: false` writes PEFT's fields only, for older PEFT versions that reject
 * unknown keys. Masks are implied by B's zeros.
 */

/** LoraConfig fields PEFT writes, with the values that mean "plain LoRA" (overridden by the adapter's own). */
const PEFT_DEFAULTS = {
  alpha_pattern: {},
  base_model_name_or_path: null,
  bias: "none",
  fan_in_fan_out: false,
  inference_mode: true,
  init_lora_weights: true,
  layers_pattern: null,
  layers_to_transform: null,
  lora_dropout: 0,
  modules_to_save: null,
  peft_type: "LORA",
  rank_pattern: {},
  revision: null,
  task_type: "CAUSAL_LM",
  use_dora: false,
  use_rslora: false,
} as const;

function denseModules(adapter: Adapter): LoraModule[] {
  return sortModules(adapter.modules).map((m) => ({ ...m, a: { kind: "dense", data: materializeA(m) }, b: m.b, mask: undefined }));
}

export interface PeftExportOptions {
  /** Keep the `lori` block in adapter_config.json (default true). */
  readonly lori?: boolean;
}

/** The PEFT adapter_config.json for `adapter` (rank/alpha patterns re-derived from its modules). */
export function peftConfigOf(adapter: Adapter, options: PeftExportOptions = {}): Record<string, unknown> {
  const { lori: _dense, ...peft } = deriveConfig(adapter.config, denseModules(adapter));
  if (options.lori === false) return { ...PEFT_DEFAULTS, ...peft };
  // The block describes the adapter as stored (its seed and mask), not the dense tensors written beside it.
  const seed = keptSeed(adapter);
  const stored = adapter.modules.map((m) =>
    m.a.kind === "seeded" && m.a.seed !== seed ? { ...m, a: { kind: "dense" as const, data: materializeA(m) } } : m,
  );
  return { ...PEFT_DEFAULTS, ...peft, lori: deriveConfig(adapter.config, stored).lori };
}

/** The tensors of the dense PEFT file, in module order (A then B, then m for DoRA). */
export function peftTensorsOf(adapter: Adapter): SafetensorsTensorData[] {
  return denseModules(adapter).flatMap((m) => [
    {
      name: `${peftPrefix(m.layer, m.module)}.lora_A.weight`,
      dtype: "F32" as const,
      shape: [m.rank, m.inFeatures],
      data: encodeFloats(materializeA(m), "F32"),
    },
    {
      name: `${peftPrefix(m.layer, m.module)}.lora_B.weight`,
      dtype: "F32" as const,
      shape: [m.outFeatures, m.rank],
      data: encodeFloats(m.b, "F32"),
    },
    // DoRA: PEFT's name and shape for m (use_dora comes from deriveConfig)
    ...(m.magnitude
      ? [
          {
            name: `${peftPrefix(m.layer, m.module)}.lora_magnitude_vector`,
            dtype: "F32" as const,
            shape: [m.outFeatures],
            data: encodeFloats(m.magnitude, "F32"),
          },
        ]
      : []),
  ]);
}

/**
 * Writes the PEFT directory atomically (temp directory beside `out`, then rename). Refuses an existing `out`
 * unless `overwrite`.
 */
export async function exportPeftDir(
  out: string,
  adapter: Adapter,
  options: { overwrite?: boolean } & PeftExportOptions = {},
): Promise<void> {
  const config = peftConfigOf(adapter, options);
  const tensors = peftTensorsOf(adapter);
  await writeAdapterFiles(out, config, tensors, { format: "pt" }, options.overwrite ?? false);
}
