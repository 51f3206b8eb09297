import path from "node:path";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { makeAdapter, type LoraModule } from "../../src/lora/adapter.js";
import { writeAdapterDir } from "../../src/lora/adapter-io.js";
import { computeBaseFingerprint } from "../../src/lora/base-fingerprint.js";
import { packMask } from "../../src/lora/mask.js";
import { GGUF_TENSOR_STEM, TARGET_MODULES } from "../../src/lora/target-modules.js";
import { rng } from "../lora/helpers.js";

export interface RandomAdapterOptions {
  readonly baseGguf: string;
  readonly adaptersDir: string;
  readonly name: string;
  /** Seed of both the Philox A and the B values. */
  readonly seed: number;
  readonly rank?: number;
  /** B ~ U(-bScale, bScale): large values make the adapter dominate the output (confident, few near-ties). */
  readonly bScale?: number;
  /** LoRI-S: fraction of B entries masked out. */
  readonly sparsity?: number;
  readonly overwrite?: boolean;
}

/** A LoRI adapter with seeded A and random B on all 7 projections of every layer of a llama GGUF. */
export async function writeRandomAdapter(options: RandomAdapterOptions): Promise<string> {
  const header = await readGgufFile(options.baseGguf);
  const rank = options.rank ?? 8;
  const random = rng(options.seed + 1);
  const layers = Number(header.metadata.get("llama.block_count")?.value);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < layers; layer++) {
    for (const module of TARGET_MODULES) {
      const tensor = header.tensors.find((t) => t.name === `blk.${layer}.${GGUF_TENSOR_STEM[module]}.weight`)!;
      const [inFeatures, outFeatures] = tensor.shape as [number, number];
      const b = new Float32Array(outFeatures * rank).map(() => (random() * 2 - 1) * (options.bScale ?? 0.5));
      let mask: Uint8Array | undefined;
      if (options.sparsity !== undefined) {
        const keep = Array.from(b, () => random() >= options.sparsity!);
        keep.forEach((k, i) => {
          if (!k) b[i] = 0;
        });
        mask = packMask(keep);
      }
      modules.push({
        layer,
        module,
        rank,
        alpha: 2 * rank,
        inFeatures,
        outFeatures,
        a: { kind: "seeded", seed: options.seed },
        b,
        ...(mask ? { mask } : {}),
      });
    }
  }
  const architecture = String(header.metadata.get("general.architecture")?.value);
  const adapter = makeAdapter(modules, {
    baseFingerprint: computeBaseFingerprint(architecture, header.tensors),
    lineage: [{ op: "test-fixture" }],
  });
  const dir = path.join(options.adaptersDir, options.name);
  await writeAdapterDir(dir, adapter, { overwrite: options.overwrite ?? false });
  return dir;
}
