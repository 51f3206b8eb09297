// Acceptance for DoRA (issue 16): an adapter trained with method "dora" cannot be a GGUF LoRA, so it is written
// as a merged model (W' = m * (W + s B A) / ||W + s B A|| per output row, folded into a copy of the base), and
// node-llama-cpp running that model must give the trainer's own log-probabilities within 1e-4. llama exercises
// the q/k row permutation (the trainer works in GGUF row order, the adapter in HF order, the merge permutes back);
// qwen2 has none, plus q/k/v biases (which DoRA does not rescale).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { makeAdapter } from "../../src/lora/adapter.js";
import { writeMergedModel } from "../../src/lora/merged-model.js";
import { TARGET_MODULES } from "../../src/lora/target-modules.js";
import { createArchModel } from "../../src/model/arch-tiny-model.js";
import { writeTokenShards, type TokenSequence } from "../../src/train/token-shards.js";
import { adapterModulesOf, baseInfo, readTrainerOutput } from "../../src/train/trainer-tensors.js";
import { EXACT_CONTEXT_OPTIONS, trainerParity } from "../support/llama-logits.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { cpu, ensureTrainerBuilt, run, rng } from "./helpers.js";

const RANK = 4;
const ALPHA = 8;

function randomSequences(seed: number, count: number, length: number): TokenSequence[] {
  const next = rng(seed);
  return Array.from({ length: count }, () => {
    const tokens = Array.from({ length }, () => Math.floor(next() * 256));
    return { tokens, supervised: tokens.map((_, t) => t >= 3) };
  });
}

async function readLogits(path: string): Promise<Float32Array> {
  const bytes = await readFile(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

describe.each(["llama", "qwen2"] as const)("a trained DoRA adapter as a merged %s model in node-llama-cpp", (architecture) => {
  const tmp = useTempDir(`lori-dora-${architecture}-`);
  const sequences = randomSequences(architecture === "llama" ? 21 : 22, 3, 12);
  const state: { merged: string; trained: Float32Array; base: Float32Array; vocab: number } = {
    merged: "",
    trained: new Float32Array(),
    base: new Float32Array(),
    vocab: 0,
  };

  beforeAll(async () => {
    ensureTrainerBuilt();
    const model = join(tmp.path, "base.gguf");
    const shards = join(tmp.path, "train.bin");
    const adapterPath = join(tmp.path, "dora.safetensors");
    const shape = { layers: 2, embd: 32, heads: 4, kvHeads: 2, ff: 48 };
    state.vocab = (await createArchModel({ out: model, architecture, seed: 8, ...shape })).vocabSize;
    await writeTokenShards(shards, sequences);
    await run({
      mode: "train",
      ...cpu,
      model,
      shards,
      output: adapterPath,
      method: "dora",
      rank: RANK,
      alpha: ALPHA,
      seed: 3,
      lr: 0.02,
      steps: 8,
      batch: 3,
    });
    for (const [key, adapter] of [
      ["trained", adapterPath],
      ["base", undefined],
    ] as const) {
      const logitsOut = join(tmp.path, `${key}.bin`);
      await run({ mode: "logits", ...cpu, model, shards, logitsOut, ...(adapter ? { adapter } : {}) });
      state[key] = await readLogits(logitsOut);
    }

    // The trainer's file (GGUF rows) -> our adapter model (HF rows), by the code `train --method dora` uses.
    const header = await readGgufFile(model);
    const info = baseInfo(header);
    const trained = await readTrainerOutput(adapterPath, info, TARGET_MODULES, RANK);
    const modules = adapterModulesOf(trained, info, { method: "dora", rank: RANK, alpha: ALPHA, seed: 3 });
    const adapter = makeAdapter(modules);
    expect(adapter.config.use_dora).toBe(true);
    expect(adapter.config.lori?.variant).toBe("dora");
    state.merged = join(tmp.path, "merged.gguf");
    await writeMergedModel(adapter, model, header, state.merged, { name: "dora" });
  }, 300_000);

  it("reproduces the trainer's log-probabilities within 1e-4", async () => {
    const llama = await getTestLlama();
    const merged = await llama.loadModel({ modelPath: state.merged });
    const context = await merged.createContext({ ...EXACT_CONTEXT_OPTIONS, contextSize: 64 });
    try {
      const { worst, effect: adapterEffect } = await trainerParity(context.getSequence(), sequences, state, state.vocab, (n) => [
        0,
        4,
        n - 1,
      ]);
      console.log(
        `[${architecture}] DoRA merged parity: max |trainer - node-llama-cpp| = ${worst.toExponential(2)} ` +
          `(the adapter moves log-probs by up to ${adapterEffect.toFixed(3)})`,
      );
      expect(adapterEffect).toBeGreaterThan(0.05);
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      await context.dispose();
      await merged.dispose();
    }
  });
});
