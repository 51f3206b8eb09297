import { beforeAll, describe, expect, it } from "vitest";
import type { Adapter } from "../../src/lora/adapter.js";
import { trainAdapter, type TrainAdapterOptions } from "../../src/train/train-adapter.js";
import { useTempDir } from "../support/temp-dir.js";
import { CPU_RUN, ensureTrainerBuilt, tinyTrainWorkspace } from "./helpers.js";

/** Continual learning for lori-d and lora: --continue-from starts from the old adapter's weights. */
describe("--continue-from with --method lori-d and lora", () => {
  const tmp = useTempDir("lori-train-continue-");
  const p = { model: "", data: "", adapters: "" };
  const LR = 1e-3;
  const STEPS = 5;
  const train = async (name: string, extra: Partial<TrainAdapterOptions>) =>
    (
      await trainAdapter({
        base: p.model,
        data: { file: p.data },
        name,
        adaptersDir: p.adapters,
        rank: 4,
        lr: 0.01,
        seed: 11,
        valFraction: 0,
        run: CPU_RUN,
        ...extra,
      })
    ).adapter;
  const flat = (adapter: Adapter, part: "a" | "b") =>
    Float32Array.from(adapter.modules.flatMap((m) => [...(part === "b" ? m.b : m.a.kind === "dense" ? m.a.data : [])]));
  const maxDiff = (x: Float32Array, y: Float32Array) => {
    expect(x.length).toBe(y.length);
    return x.reduce((d, v, i) => Math.max(d, Math.abs(v - y[i]!)), 0);
  };
  // AdamW moves a weight by about lr per step (at most a few lr while the moments warm up).
  const adamBound = 4 * LR * STEPS;

  beforeAll(async () => {
    ensureTrainerBuilt();
    Object.assign(
      p,
      await tinyTrainWorkspace(
        tmp.path,
        Array.from({ length: 8 }, (_, i) => ({ prompt: `count ${i}:`, completion: ` ${i + 1} ${i + 2}` })),
      ),
    );
  }, 60_000);

  it("lori-d starts from the old B (same seed, rank, alpha, targets), trains all of it, and records continue_from", async () => {
    const old = await train("old-d", { steps: 10, targets: ["q_proj", "v_proj"], alpha: 6 });
    const continued = await train("cont-d", {
      method: "lori-d",
      continueFrom: "old-d",
      steps: STEPS,
      lr: LR,
      seed: undefined,
      rank: undefined,
    });
    const fresh = await train("fresh-d", { method: "lori-d", steps: STEPS, lr: LR, targets: ["q_proj", "v_proj"], alpha: 6 });
    expect(continued.modules.map((m) => [m.layer, m.module, m.rank, m.alpha, m.a])).toEqual(
      old.modules.map((m) => [m.layer, m.module, 4, 6, { kind: "seeded", seed: 11 }]),
    );
    expect(continued.modules.every((m) => m.mask === undefined)).toBe(true);
    expect(continued.config.lori!.variant).toBe("lori-d");
    const [b0, b1, bf] = [old, continued, fresh].map((a) => flat(a, "b"));
    expect(maxDiff(b1!, b0!)).toBeGreaterThan(0);
    expect(maxDiff(b1!, b0!)).toBeLessThanOrEqual(adamBound);
    expect(maxDiff(b1!, bf!)).toBeGreaterThan(adamBound);
    const lineage = continued.config.lori!.lineage;
    expect(lineage).toHaveLength(2);
    expect(lineage.at(-1)).toMatchObject({ op: "train", method: "lori-d", seed: 11, continue_from: "old-d" });
  }, 60_000);

  it("lora starts from the old A and B, trains both, and records continue_from", async () => {
    const old = await train("old-lora", { method: "lora", steps: 10 });
    const continued = await train("cont-lora", { method: "lora", continueFrom: "old-lora", steps: STEPS, lr: LR, seed: 3 });
    const fresh = await train("fresh-lora", { method: "lora", steps: STEPS, lr: LR, seed: 3 });
    expect(continued.modules.every((m) => m.a.kind === "dense" && m.rank === 4)).toBe(true);
    expect(continued.config.lori!.variant).toBe("lora");
    for (const part of ["a", "b"] as const) {
      const [x0, x1, xf] = [old, continued, fresh].map((a) => flat(a, part));
      expect(maxDiff(x1!, x0!), part).toBeGreaterThan(0);
      expect(maxDiff(x1!, x0!), part).toBeLessThanOrEqual(adamBound);
      expect(maxDiff(x1!, xf!), part).toBeGreaterThan(adamBound);
    }
    expect(continued.config.lori!.lineage.at(-1)).toMatchObject({ op: "train", method: "lora", continue_from: "old-lora" });
  }, 60_000);

  it("refuses an old adapter of the wrong kind and conflicting settings with one-line errors", async () => {
    await expect(train("x", { method: "lora", continueFrom: "old-d", steps: 1 })).rejects.toThrow(
      /^--method lora --continue-from needs a LoRA adapter with a stored A; 'old-d' has a seeded A/,
    );
    await expect(train("x", { method: "lori-d", continueFrom: "old-lora", steps: 1 })).rejects.toThrow(
      /^--method lori-d --continue-from needs a LoRI adapter with one seeded A; 'old-lora' stores A/,
    );
    await expect(train("x", { method: "lori-d", continueFrom: "old-d", rank: 8, steps: 1 })).rejects.toThrow(
      "--rank 8 conflicts with --continue-from 'old-d' (4)",
    );
    await expect(train("x", { method: "lori-d", continueFrom: "old-d", seed: 12, steps: 1 })).rejects.toThrow(
      "--seed 12 conflicts with --continue-from 'old-d' (11)",
    );
    await expect(train("x", { method: "lori-d", continueFrom: "old-d", targets: ["q_proj"], steps: 1 })).rejects.toThrow(
      "--targets q_proj conflicts",
    );
  }, 60_000);
});
