// The native trainer on qwen2 and qwen3 (native/model.cpp, native/llama_graph.cpp): NEOX rope, q/k rows in HF
// order (no permutation), qwen2's q/k/v biases as frozen tensors and qwen3's per-head q/k RMSNorm before rope.
// Gradients must match finite differences, and an adapter it trains, exported as a GGUF LoRA, must give the
// trainer's own log-probabilities in node-llama-cpp (whose qwen2/qwen3 graphs are the reference here).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createArchModel } from "../../src/model/arch-tiny-model.js";
import type { NativeTrainerConfig } from "../../src/train/native-trainer.js";
import { writeTokenShards, type TokenSequence } from "../../src/train/token-shards.js";
import { EXACT_CONTEXT_OPTIONS, trainerParity } from "../support/llama-logits.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { cpu, ensureTrainerBuilt, last, readSafetensors, rng, run } from "./helpers.js";

// Random byte tokens (ids 0..255 of the byte tokenizer), a 3-token unsupervised prompt.
function randomSequences(seed: number, count: number, length: number): TokenSequence[] {
  const next = rng(seed);
  return Array.from({ length: count }, () => {
    const tokens = Array.from({ length }, () => Math.floor(next() * 256));
    return { tokens, supervised: tokens.map((_, t) => t >= 3) };
  });
}

// qwen3 decouples the head size from n_embd / n_head (16 here, not 8), as the real models do.
const SHAPES = {
  qwen2: { layers: 2, embd: 32, heads: 4, kvHeads: 2, ff: 48 },
  qwen3: { layers: 2, embd: 32, heads: 4, kvHeads: 2, ff: 48, headDim: 16 },
} as const;

describe.each(["qwen2", "qwen3"] as const)("native trainer on a tiny random %s", (arch) => {
  const tmp = useTempDir(`lori-native-${arch}-`);
  const sequences = randomSequences(arch === "qwen2" ? 3 : 4, 3, 12);
  const paths = { model: "", shards: "", gguf: "" };
  const logits = { trained: new Float32Array(), base: new Float32Array() };
  let vocab = 0;
  let model: LlamaModel | undefined;

  beforeAll(async () => {
    ensureTrainerBuilt();
    paths.model = join(tmp.path, `${arch}.gguf`);
    paths.shards = join(tmp.path, "train.bin");
    vocab = (await createArchModel({ out: paths.model, architecture: arch, seed: 5, ...SHAPES[arch] })).vocabSize;
    await writeTokenShards(paths.shards, sequences);
  }, 300_000);

  afterAll(async () => {
    await model?.dispose();
  });

  const base = () => ({ ...cpu, model: paths.model, shards: paths.shards, rank: 4, alpha: 8, seed: 5 });

  it("computes dB (lori-d) and dA, dB (lora) that match central finite differences within 1e-3", async () => {
    for (const method of ["lori-d", "lora"] as const) {
      const gc = last(await run({ mode: "gradcheck", ...base(), method, entries: 40 }), "gradcheck");
      console.log(
        `[${arch}] gradcheck ${method}: max rel ${gc.max_rel_err.toExponential(2)}, norm rel ${gc.norm_rel_err.toExponential(2)}`,
      );
      expect(gc.checked).toBe(40);
      expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
      expect(gc.norm_rel_err).toBeLessThanOrEqual(1e-3);
    }
  });

  it("computes full fine-tuning gradients (every weight a parameter) within 1e-3", async () => {
    // The TypeScript config types have no full-method gradcheck (only the trainer has it), hence the cast.
    const config = { mode: "gradcheck", ...cpu, model: paths.model, shards: paths.shards, method: "full", entries: 40 };
    const gc = last(await run(config as unknown as NativeTrainerConfig), "gradcheck");
    console.log(`[${arch}] gradcheck full: max rel ${gc.max_rel_err.toExponential(2)}, norm rel ${gc.norm_rel_err.toExponential(2)}`);
    expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
    expect(gc.norm_rel_err).toBeLessThanOrEqual(1e-3);
  });

  it("reproduces node-llama-cpp's log-probabilities with the exported adapter within 1e-4", async () => {
    const adapter = join(tmp.path, "adapter.safetensors");
    // every projection, so q/k rows (no permutation here), the biases and the q/k norms all matter
    const done = last(
      await run({ mode: "train", ...base(), output: adapter, method: "lori-d", seed: 77, lr: 0.02, steps: 8, batch: 3 }),
      "done",
    );
    const untrained = last(await run({ mode: "logits", ...cpu, model: paths.model, shards: paths.shards }), "done").loss;
    expect(done.final_loss).toBeLessThan(untrained!);
    expect((await readSafetensors(adapter)).metadata.base_architecture).toBe(arch);
    paths.gguf = join(tmp.path, "adapter.gguf");
    await run({ mode: "export-gguf", model: paths.model, adapter, output: paths.gguf });
    for (const [key, withAdapter] of [
      ["trained", true],
      ["base", false],
    ] as const) {
      const logitsOut = join(tmp.path, `${key}.bin`);
      await run({ mode: "logits", ...cpu, model: paths.model, shards: paths.shards, logitsOut, ...(withAdapter ? { adapter } : {}) });
      const bytes = await readFile(logitsOut);
      logits[key] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }

    model = await (await getTestLlama()).loadModel({ modelPath: paths.model });
    const context = await model.createContext({
      ...EXACT_CONTEXT_OPTIONS,
      contextSize: 64,
      lora: { adapters: [{ filePath: paths.gguf, scale: 1 }] },
    });
    try {
      const { worst, effect: adapterEffect } = await trainerParity(context.getSequence(), sequences, logits, vocab, (n) => [0, 4, n - 1]);
      console.log(
        `[${arch}] parity: max |trainer - node-llama-cpp| = ${worst.toExponential(2)} (adapter moves log-probs by up to ${adapterEffect.toFixed(3)})`,
      );
      expect(adapterEffect).toBeGreaterThan(0.05);
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      await context.dispose();
    }
  });
});
