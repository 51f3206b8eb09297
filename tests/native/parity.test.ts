import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { writeTokenShards } from "../../src/train/token-shards.js";
import { EXACT_CONTEXT_OPTIONS, trainerParity } from "../support/llama-logits.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { cpu, ensureTrainerBuilt, haveStories, rng, run, storiesPath, storiesSkipMessage } from "./helpers.js";

const VOCAB = 512;

describe.skipIf(!haveStories)("trained adapter in node-llama-cpp (stories260K, F32)", () => {
  if (!haveStories) console.log(storiesSkipMessage);
  const tmp = useTempDir("lori-parity-");
  const next = rng(9);
  const sequences = Array.from({ length: 3 }, () => {
    const tokens = [1, ...Array.from({ length: 11 }, () => 3 + Math.floor(next() * (VOCAB - 3)))];
    return { tokens, supervised: tokens.map((_, t) => t >= 3) };
  });
  const state = { gguf: "", trained: new Float32Array(), base: new Float32Array() };
  let model: LlamaModel | undefined;

  beforeAll(async () => {
    ensureTrainerBuilt();
    const shards = join(tmp.path, "train.bin");
    await writeTokenShards(shards, sequences);
    const adapter = join(tmp.path, "adapter.safetensors");
    // all projections, so every code path of llama.cpp's LoRA (q/k rows in GGUF order included) is compared
    await run({
      mode: "train",
      ...cpu,
      model: storiesPath,
      shards,
      output: adapter,
      method: "lori-d",
      rank: 8,
      alpha: 16,
      seed: 77,
      lr: 0.02,
      steps: 8,
      batch: 3,
    });
    state.gguf = join(tmp.path, "adapter.gguf");
    await run({ mode: "export-gguf", model: storiesPath, adapter, output: state.gguf });
    for (const [key, withAdapter] of [
      ["trained", true],
      ["base", false],
    ] as const) {
      const logitsOut = join(tmp.path, `${key}.bin`);
      await run({ mode: "logits", ...cpu, model: storiesPath, shards, logitsOut, ...(withAdapter ? { adapter } : {}) });
      const bytes = await readFile(logitsOut);
      state[key] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }
    const llama = await getTestLlama();
    model = await llama.loadModel({ modelPath: storiesPath });
  }, 300_000);

  afterAll(async () => {
    await model?.dispose();
  });

  it("reproduces the trainer's logits within 1e-4 (as log-probabilities)", async () => {
    const context = await model!.createContext({
      ...EXACT_CONTEXT_OPTIONS,
      contextSize: 64,
      lora: { adapters: [{ filePath: state.gguf, scale: 1 }] },
    });
    try {
      const { worst, effect: adapterEffect } = await trainerParity(context.getSequence(), sequences, state, VOCAB, (n) => [0, 4, n - 1]);
      console.log(
        `parity: max |trainer - node-llama-cpp| = ${worst.toExponential(2)} (adapter moves log-probs by up to ${adapterEffect.toFixed(3)})`,
      );
      expect(adapterEffect).toBeGreaterThan(0.05);
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      await context.dispose();
    }
  });
});
