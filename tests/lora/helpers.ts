import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoraModule } from "../../src/lora/adapter.js";
import { packMask } from "../../src/lora/mask.js";
import { TARGET_MODULES, type ProjectionModule, type TargetModule } from "../../src/lora/target-modules.js";
import { mulberry32 } from "../../src/util/mulberry32.js";

/** Deterministic pseudo-random numbers for test data, so failures reproduce. */
export const rng = mulberry32;

export interface RandomModuleOptions {
  layer?: number;
  module?: TargetModule;
  rank?: number;
  alpha?: number;
  inFeatures?: number;
  outFeatures?: number;
  /** Seeded A with this seed instead of a random dense A. */
  seed?: number;
  /** Fraction of B entries masked out; adds a mask when set. */
  sparsity?: number;
  random?: () => number;
}

export function randomModule(options: RandomModuleOptions = {}): LoraModule {
  const random = options.random ?? rng(1);
  const rank = options.rank ?? 4;
  const inFeatures = options.inFeatures ?? 12;
  const outFeatures = options.outFeatures ?? 10;
  const b = new Float32Array(outFeatures * rank).map(() => random() * 2 - 1);
  let mask: Uint8Array | undefined;
  if (options.sparsity !== undefined) {
    const keep = Array.from(b, () => random() >= options.sparsity!);
    b.forEach((_, i) => {
      if (!keep[i]) b[i] = 0;
    });
    mask = packMask(keep);
  }
  return {
    layer: options.layer ?? 0,
    module: options.module ?? "q_proj",
    rank,
    alpha: options.alpha ?? 2 * rank,
    inFeatures,
    outFeatures,
    a:
      options.seed !== undefined
        ? { kind: "seeded", seed: options.seed }
        : { kind: "dense", data: new Float32Array(rank * inFeatures).map(() => (random() * 2 - 1) / Math.sqrt(inFeatures)) },
    b,
    ...(mask ? { mask } : {}),
  };
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "lori-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Tiny model defaults: 2 layers, embd 64, 4 heads, 2 kv heads (kv dim 32), ff 128.
const SHAPES: Record<ProjectionModule, [number, number]> = {
  q_proj: [64, 64],
  k_proj: [32, 64],
  v_proj: [32, 64],
  o_proj: [64, 64],
  gate_proj: [128, 64],
  up_proj: [128, 64],
  down_proj: [64, 128],
};

/** Modules for every projection of both layers of createTinyModel's default shape. */
export function tinyModules(
  options: { rank?: (m: TargetModule, layer: number) => number; seed?: number; sparsity?: number; random?: () => number } = {},
): LoraModule[] {
  const random = options.random ?? rng(21);
  return [0, 1].flatMap((layer) =>
    TARGET_MODULES.map((module) => {
      const [outFeatures, inFeatures] = SHAPES[module];
      const rank = options.rank?.(module, layer) ?? 4;
      return randomModule({
        layer,
        module,
        rank,
        alpha: rank * 2,
        inFeatures,
        outFeatures,
        random,
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
        ...(options.sparsity !== undefined ? { sparsity: options.sparsity } : {}),
      });
    }),
  );
}
