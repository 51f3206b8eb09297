import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { NativeTrainerError } from "../../src/train/native-trainer.js";
import { writeTokenShards, type TokenSequence } from "../../src/train/token-shards.js";
import { useTempDir } from "../support/temp-dir.js";
import { cpu, ensureTrainerBuilt, last, only, projectionShapes, readSafetensors, rng, run } from "./helpers.js";

// DoRA in the native trainer (method "dora"): W' = m ⊙ (W + s B A) / ||W + s B A||, norm per output row over the
// input dimension (PEFT's get_weight_norm), held constant in the gradient as PEFT does.
// The tiny random model of `make-model` defaults: llama, d 32, 2 layers, 4 heads, 2 kv heads, ff 48, vocab 64.
const TINY = { d: 32, kvOut: 16, ff: 48, layers: 2, vocab: 64 };
const RANK = 4;

function randomSequences(seed: number, count: number): TokenSequence[] {
  const next = rng(seed);
  return Array.from({ length: count }, () => {
    const length = 8 + Math.floor(next() * 8);
    const tokens = Array.from({ length }, () => Math.floor(next() * TINY.vocab));
    return { tokens, supervised: tokens.map((_, t) => t >= 4) };
  });
}

describe("native trainer, method dora", () => {
  const tmp = useTempDir("lori-native-dora-");
  const paths = { model: "", shards: "" };

  beforeAll(async () => {
    ensureTrainerBuilt();
    paths.model = join(tmp.path, "tiny.gguf");
    paths.shards = join(tmp.path, "train.bin");
    await run({ mode: "make-model", output: paths.model, seed: 3 });
    await writeTokenShards(paths.shards, randomSequences(5, 8));
  }, 300_000);

  const base = () => ({ ...cpu, model: paths.model, shards: paths.shards, rank: RANK, alpha: 8, seed: 9, method: "dora" as const });

  it("computes dA, dB and dm that match central finite differences within 1e-3", async () => {
    const gc = last(await run({ mode: "gradcheck", ...base(), entries: 64 }), "gradcheck");
    expect(gc.checked).toBe(64);
    // the check must cover m, not only A and B
    expect(gc.checked_magnitude).toBeGreaterThan(0);
    expect(gc.checked_magnitude).toBeLessThan(64);
    expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
    expect(gc.norm_rel_err).toBeLessThanOrEqual(1e-3);
  });

  it("starts m at the row norms of W (float64 reference) and writes A, B and m", async () => {
    // 0 steps: the output is the initial adapter (B = 0, so m = ||W|| per output row).
    const output = join(tmp.path, "init.safetensors");
    await run({ mode: "train", ...base(), output, steps: 0 });
    const { metadata, tensors } = await readSafetensors(output);
    expect(metadata.method).toBe("dora");
    const header = await readGgufFile(paths.model);
    let maxRel = 0;
    for (let layer = 0; layer < TINY.layers; layer++) {
      for (const [stem, [out, inFeatures]] of Object.entries(projectionShapes(TINY.d, TINY.kvOut, TINY.ff))) {
        const m = tensors.get(`blk.${layer}.${stem}.lora_magnitude_vector`);
        expect(m?.shape).toEqual([out]);
        expect(tensors.get(`blk.${layer}.${stem}.lora_a`)?.shape).toEqual([RANK, inFeatures]);
        expect(tensors.get(`blk.${layer}.${stem}.lora_b`)?.shape).toEqual([out, RANK]);
        const info = header.tensors.find((t) => t.name === `blk.${layer}.${stem}.weight`)!;
        const w = await readTensorAsFloat32(paths.model, info); // row-major [out, in]
        for (let o = 0; o < out; o++) {
          let sum = 0;
          for (let i = 0; i < inFeatures; i++) sum += w[o * inFeatures + i]! ** 2;
          maxRel = Math.max(maxRel, Math.abs(m!.data[o]! - Math.sqrt(sum)) / Math.sqrt(sum));
        }
      }
    }
    // F32 sum of <= 48 squares vs float64
    expect(maxRel).toBeLessThanOrEqual(1e-6);
  });

  it("trains: the loss falls and m moves away from its start", async () => {
    const output = join(tmp.path, "trained.safetensors");
    const events = await run({ mode: "train", ...base(), output, steps: 24, batch: 4, lr: 0.02, shuffle: false, evalFraction: 0.25 });
    // A trains, so the eval events report its drift from the start, as for LoRA
    expect(last(events, "eval").a_drift).toBeGreaterThan(0);
    const steps = only(events, "step");
    const first = steps.slice(0, 2).reduce((s, e) => s + e.loss, 0);
    const lastTwo = steps.slice(-2).reduce((s, e) => s + e.loss, 0);
    expect(lastTwo).toBeLessThan(0.7 * first);
    const start = last(events, "start");
    // A (r x in) + B (out x r) + m (out) over all 7 projections and both layers
    const shapes = Object.values(projectionShapes(TINY.d, TINY.kvOut, TINY.ff));
    const expected = TINY.layers * shapes.reduce((n, [out, inF]) => n + RANK * inF + out * RANK + out, 0);
    expect(start.trainable_params).toBe(expected);
    const { tensors } = await readSafetensors(output);
    const init = (await readSafetensors(join(tmp.path, "init.safetensors"))).tensors;
    const m0 = init.get("blk.0.attn_q.lora_magnitude_vector")!.data;
    const m1 = tensors.get("blk.0.attn_q.lora_magnitude_vector")!.data;
    expect(m1.some((x, i) => x !== m0[i])).toBe(true);

    // The logits mode reads the DoRA adapter back (m required, norms recomputed) and gives a finite loss.
    const done = last(await run({ mode: "logits", ...cpu, model: paths.model, shards: paths.shards, adapter: output }), "done");
    expect(Number.isFinite(done.loss)).toBe(true);

    // No GGUF LoRA can express DoRA: export-gguf refuses it (exit 3) instead of dropping m.
    const refused = await run({ mode: "export-gguf", model: paths.model, adapter: output, output: join(tmp.path, "dora.gguf") }).catch(
      (e: unknown) => e,
    );
    expect((refused as NativeTrainerError).exitCode).toBe(3);
    expect((refused as NativeTrainerError).message).toContain("export it as a merged model");
  });

  it("trains on a Q8_0 base held as Q8_0 (the norm converts W to F32)", async () => {
    const quantized = join(tmp.path, "tiny-q8.gguf");
    await run({ mode: "make-model", output: quantized, seed: 4, weightType: "q8_0" });
    const output = join(tmp.path, "q8.safetensors");
    const events = await run({ mode: "train", ...base(), model: quantized, frozenWeights: "native", output, steps: 3, batch: 2 });
    expect(last(events, "start").weight_types).toContain("q8_0");
    const { tensors } = await readSafetensors(output);
    expect(tensors.get("blk.1.ffn_down.lora_magnitude_vector")!.data.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
  });

  it("refuses a mask with a clear error", async () => {
    const failure = await run({ mode: "gradcheck", ...base(), mask: paths.shards }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(NativeTrainerError);
    expect((failure as NativeTrainerError).exitCode).toBe(2);
    expect((failure as NativeTrainerError).message).toContain("only used by method lori-s");
  });
});
