import type { AdapterEntry } from "../engine/adapters/adapter-registry.js";
import type { ModelRegistry } from "../engine/model-registry.js";

/** The base model an adapter was built for (by fingerprint), else null. */
export function parentModelId(models: ModelRegistry, entry: AdapterEntry): string | null {
  const fingerprint = entry.config.lori?.base_fingerprint?.sha256;
  const match = models.list().find((m) => m.fingerprint.sha256 === fingerprint);
  return match?.spec.id ?? null;
}

export function loriSummary(entry: AdapterEntry) {
  const lori = entry.config.lori;
  return {
    variant: lori?.variant ?? "lora",
    rank: entry.config.r,
    rank_pattern: entry.config.rank_pattern,
    alpha: entry.config.lora_alpha,
    sparsity: lori?.sparsity ?? 0,
    seed: lori?.a_init?.seed ?? null,
    lineage: lori?.lineage ?? [],
  };
}

/** `GET /adapters/{name}` and the 201 body of register/merge. */
export function adapterObject(models: ModelRegistry, entry: AdapterEntry) {
  return {
    id: entry.name,
    object: "adapter" as const,
    created: Math.floor(entry.updatedAt / 1000),
    parent: parentModelId(models, entry),
    hash: entry.hash,
    bytes: entry.bytes,
    target_modules: entry.config.target_modules,
    lori: loriSummary(entry),
  };
}
