import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makeAdapter } from "../../src/lora/adapter.js";
import type { ModuleLayoutInput } from "../../src/lora/adapter-layout.js";
import { WEIGHTS_FILE, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { adapterSizeReport, layoutSizeReport } from "../../src/lora/size-report.js";
import { LLAMA3_8B_SHAPES, TARGET_MODULES } from "../../src/lora/target-modules.js";
import { randomModule, rng, withTempDir } from "./helpers.js";

function llama3Layouts(rank: number, options: { aStored: boolean; keep?: number }): ModuleLayoutInput[] {
  return Array.from({ length: 32 }, (_, layer) =>
    TARGET_MODULES.map((module) => {
      const [outFeatures, inFeatures] = LLAMA3_8B_SHAPES[module];
      const keep = options.keep;
      return {
        layer,
        module,
        rank,
        inFeatures,
        outFeatures,
        aStored: options.aStored,
        ...(keep !== undefined ? { sparseCount: Math.floor(keep * outFeatures * rank) } : {}),
      };
    }),
  ).flat();
}

describe("size report", () => {
  it("predicts the exact size of the file the writer produces", async () => {
    const random = rng(3);
    for (const [adapter, dtype] of [
      [makeAdapter(TARGET_MODULES.map((module) => randomModule({ module, random, seed: 4, sparsity: 0.9 }))), "F16"],
      [makeAdapter(TARGET_MODULES.map((module) => randomModule({ module, random }))), "F32"],
    ] as const) {
      await withTempDir(async (dir) => {
        await writeAdapterDir(join(dir, "a"), adapter, { dtype });
        expect(adapterSizeReport(adapter, dtype).fileBytes).toBe((await stat(join(dir, "a", WEIGHTS_FILE))).size);
      });
    }
  });

  // Computed from the writer's layout code for all 32 layers x 7 projections (headers included), without
  // allocating tensor data; per-module kept counts are floor(10 % of out*r), i.e. 90 % sparsity.
  it("Llama-3-8B, r = 32: LoRI-S (90 % sparse, seeded A, F16 values) is under 10 % of dense fp16 PEFT", () => {
    const lora = layoutSizeReport(llama3Layouts(32, { aStored: true }), "lora", "F16");
    const loriD = layoutSizeReport(llama3Layouts(32, { aStored: false }), "lori-d", "F16");
    const loriS = layoutSizeReport(llama3Layouts(32, { aStored: false, keep: 0.1 }), "lori-s", "F16");
    // The paper's counts: LoRA 83.9M, LoRI-D 44.0M, LoRI-S 4.4M.
    expect(lora.trainableParams).toBe(83_886_080);
    expect(loriD.trainableParams).toBe(44_040_192);
    expect(Math.round(loriS.trainableParams / 1e5) / 10).toBe(4.4);
    expect(lora.denseFp16PeftBytes).toBeGreaterThan(83_886_080 * 2);
    expect(lora.denseFp16PeftBytes).toBeLessThan(83_886_080 * 2 + 100_000);
    expect(loriS.ratioToDenseFp16).toBeLessThanOrEqual(0.1);
    if (process.env.LORI_PRINT_SIZES) console.log({ lora, loriD, loriS });
    // values 2 bytes x 4.4M + mask 1 bit x 44.0M ~ 14.3 MB of ~167.8 MB.
    expect(loriS.fileBytes).toBeGreaterThan(14_300_000);
    expect(loriS.fileBytes).toBeLessThan(14_500_000);
    expect(loriS.ratioToDenseFp16).toBeCloseTo(0.0855, 3);
    // F32 values would not make the 10 % target: documented in docs/adapter-format.md.
    expect(layoutSizeReport(llama3Layouts(32, { aStored: false, keep: 0.1 }), "lori-s", "F32").ratioToDenseFp16).toBeGreaterThan(0.1);
  });
});
