import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { vi } from "vitest";
import type { CliCommand } from "../../src/cli/command.js";
import { float16BitsToFloat32Array, float32ArrayToFloat16Bits } from "../../src/gguf/float16.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { writeSafetensors, type SafetensorsTensorData } from "../../src/lora/safetensors.js";
import { GGUF_TENSOR_STEM, TARGET_MODULES, type TargetModule } from "../../src/lora/target-modules.js";
import { rng } from "./helpers.js";

/** One target module's shape: PEFT A is [rank, inFeatures], B is [outFeatures, rank]. */
export interface ModuleShape {
  readonly layer: number;
  readonly module: TargetModule;
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** Every q/k/v/o/gate/up/down tensor of a GGUF base, with shapes read from its header (ne = [in, out]). */
export function moduleShapesOfGguf(header: GgufFile): ModuleShape[] {
  const byName = new Map(header.tensors.map((t) => [t.name, t.shape]));
  const shapes: ModuleShape[] = [];
  for (let layer = 0; byName.has(`blk.${layer}.attn_q.weight`); layer++) {
    for (const module of TARGET_MODULES) {
      const shape = byName.get(`blk.${layer}.${GGUF_TENSOR_STEM[module]}.weight`);
      if (shape) shapes.push({ layer, module, inFeatures: shape[0]!, outFeatures: shape[1]! });
    }
  }
  return shapes;
}

export interface PeftAdapterSpec {
  readonly rank: number;
  readonly alpha: number;
  readonly useRslora?: boolean;
  readonly dtype?: "F32" | "F16";
  /** PEFT tensors by name (values as float32; rounded to F16 on write when dtype is F16). */
  readonly tensors: Map<string, Float32Array>;
  /** Extra / overriding adapter_config.json fields. */
  readonly config?: Record<string, unknown>;
}

/**
 * Random PEFT tensors for `shapes`: A ~ U(-1/sqrt(in), 1/sqrt(in)) like PEFT's init, B ~ U(-bScale, bScale)
 * with every entry non-zero, or with `zeroFraction` of B set to exactly 0 (a LoRI-S adapter saved densely).
 */
export function randomPeftTensors(
  shapes: readonly ModuleShape[],
  options: { rank: number; seed: number; bScale?: number; zeroFraction?: number; fixedA?: (s: ModuleShape) => Float32Array },
): Map<string, Float32Array> {
  const random = rng(options.seed);
  const tensors = new Map<string, Float32Array>();
  for (const s of shapes) {
    const bound = 1 / Math.sqrt(s.inFeatures);
    const a = options.fixedA?.(s) ?? Float32Array.from({ length: options.rank * s.inFeatures }, () => (random() * 2 - 1) * bound);
    const b = Float32Array.from({ length: s.outFeatures * options.rank }, () => {
      const keep = options.zeroFraction === undefined || random() >= options.zeroFraction;
      return keep ? (0.05 + 0.95 * random()) * (random() < 0.5 ? -1 : 1) * (options.bScale ?? 1) : 0;
    });
    tensors.set(`${peftPrefix(s.layer, s.module)}.lora_A.weight`, a);
    tensors.set(`${peftPrefix(s.layer, s.module)}.lora_B.weight`, b);
  }
  return tensors;
}

/** Values as PEFT would have stored them in `dtype` (what the reference must use). */
export function asStored(tensors: Map<string, Float32Array>, dtype: "F32" | "F16"): Map<string, Float32Array> {
  if (dtype === "F32") return tensors;
  return new Map([...tensors].map(([name, values]) => [name, float16BitsToFloat32Array(float32ArrayToFloat16Bits(values))]));
}

/** Writes a directory the way PEFT's save_pretrained does: full LoraConfig JSON + safetensors with format "pt". */
export async function writePeftDir(dir: string, spec: PeftAdapterSpec): Promise<void> {
  await mkdir(dir, { recursive: true });
  // P.lora_A.weight / P.lora_B.weight, or DoRA's P.lora_magnitude_vector: the module is P's last part
  const targets = [
    ...new Set([...spec.tensors.keys()].map((name) => name.split(".").at(name.endsWith(".lora_magnitude_vector") ? -2 : -3)!)),
  ];
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: "test/random-llama",
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: spec.alpha,
    lora_dropout: 0.05,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: spec.rank,
    rank_pattern: {},
    revision: null,
    target_modules: targets.reverse(), // PEFT writes a set: order is arbitrary
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: spec.useRslora ?? false,
    ...spec.config,
  };
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  const dtype = spec.dtype ?? "F32";
  const data: SafetensorsTensorData[] = [...spec.tensors].map(([name, values]) => {
    const rows = name.includes("lora_A") ? spec.rank : values.length / spec.rank;
    const shape = name.endsWith(".lora_magnitude_vector")
      ? [values.length]
      : name.includes("lora_A")
        ? [rows, values.length / rows]
        : [rows, spec.rank];
    const bytes =
      dtype === "F32"
        ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
        : new Uint8Array(float32ArrayToFloat16Bits(values).buffer);
    return { name, dtype, shape, data: bytes };
  });
  await writeSafetensors(join(dir, "adapter_model.safetensors"), data, { format: "pt" });
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The error `run` threw (the CLI prints its message as one line), if any. */
  readonly error: Error | null;
}

/** Runs a command object in-process, capturing what it writes to stdout / stderr. */
export async function runCli(command: CliCommand, argv: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await command.run(argv);
    return { code, stdout, stderr, error: null };
  } catch (error) {
    return { code: null, stdout, stderr, error: error as Error };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
