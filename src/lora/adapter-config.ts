import { z } from "zod";
import { LoraError } from "./errors.js";

/**
 * adapter_config.json: PEFT's LoRA config (so PEFT and the published LoRI adapters load unchanged) plus an
 * optional `lori` block. Unknown PEFT fields are kept (loose objects); fields that would change the maths in
 * ways we do not implement (fan_in_fan_out, trained biases, extra full modules) are rejected, not ignored.
 * DoRA (`use_dora: true`, with a `lora_magnitude_vector` per module) is read and stored, but it is not a LoRA:
 * it is served only as a merged model (src/lora/dora.ts).
 */

export const LORI_FORMAT_VERSION = 1;

const shapeSchema = z.array(z.number().int().nonnegative());

export const baseFingerprintSchema = z.object({
  architecture: z.string().min(1),
  tensors: z.record(z.string(), shapeSchema),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
});

export const aInitSchema = z.object({
  prng: z.literal("philox4x32-10"),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  distribution: z.literal("kaiming-uniform"),
});

export const loriVariantSchema = z.enum(["lora", "lori-d", "lori-s", "dora"]);

export const loriSectionSchema = z.looseObject({
  format_version: z.literal(LORI_FORMAT_VERSION),
  variant: loriVariantSchema,
  /** Fraction of B entries that are masked out (0 for dense). */
  sparsity: z.number().min(0).lt(1),
  /** How A was generated when it is not stored; null when every lora_A tensor is in the file. */
  a_init: aInitSchema.nullable(),
  base_fingerprint: baseFingerprintSchema.nullable().default(null),
  /** Provenance, newest last: training runs, imports, merges. Free-form beyond `op`. */
  lineage: z.array(z.looseObject({ op: z.string() })).default([]),
  training: z.record(z.string(), z.unknown()).nullable().default(null),
});

export const adapterConfigSchema = z.looseObject({
  peft_type: z.literal("LORA"),
  r: z.number().int().positive(),
  lora_alpha: z.number().refine(Number.isFinite, "must be finite"),
  target_modules: z.union([z.array(z.string()), z.string()]),
  base_model_name_or_path: z.string().nullable().default(null),
  rank_pattern: z.record(z.string(), z.number().int().positive()).default({}),
  alpha_pattern: z.record(z.string(), z.number().refine(Number.isFinite, "must be finite")).default({}),
  use_rslora: z.boolean().default(false),
  use_dora: z.boolean().default(false),
  task_type: z.string().nullable().default(null),
  fan_in_fan_out: z.literal(false, "fan_in_fan_out adapters are not supported").optional(),
  bias: z.literal("none", "adapters with trained biases are not supported").optional(),
  modules_to_save: z.array(z.string()).max(0, "modules_to_save (full extra weights) is not supported").nullable().optional(),
  lori: loriSectionSchema.optional(),
});

export type AdapterConfig = z.output<typeof adapterConfigSchema>;
export type LoriSection = z.output<typeof loriSectionSchema>;
export type LoriVariant = z.output<typeof loriVariantSchema>;
export type AInit = z.output<typeof aInitSchema>;

/** Validates parsed JSON; errors list every problem with its JSON path. */
export function parseAdapterConfig(json: unknown, source: string): AdapterConfig {
  const result = adapterConfigSchema.safeParse(json);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
  throw new LoraError("ADAPTER_BAD_CONFIG", `${source}: invalid adapter config: ${problems.join("; ")}`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * PEFT's rank_pattern/alpha_pattern lookup: the first key (in insertion order) equal to the module name, or
 * matching it as the regex `(.*\.)?(key)$`. Keys that are not valid regexes fall back to a literal suffix match.
 */
export function resolvePattern<T>(pattern: Readonly<Record<string, T>>, moduleName: string): T | undefined {
  for (const [key, value] of Object.entries(pattern)) {
    if (key === moduleName) return value;
    let regex: RegExp;
    try {
      regex = new RegExp(`^(.*\\.)?(${key})$`);
    } catch {
      regex = new RegExp(`^(.*\\.)?(${escapeRegExp(key)})$`);
    }
    if (regex.test(moduleName)) return value;
  }
  return undefined;
}
