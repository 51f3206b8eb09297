import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import type { NativeTrainerConfig } from "../../src/train/native-trainer.js";
import { writeTokenShards } from "../../src/train/token-shards.js";
import { EXACT_CONTEXT_OPTIONS, trainerParity } from "../support/llama-logits.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { cpu, ensureTrainerBuilt, last, rng, run } from "./helpers.js";

const VOCAB = 260;

/** Method "full" is not an adapter method, so the typed config does not list it. */
const fullConfig = (config: Record<string, unknown>) => ({ ...config, method: "full" }) as unknown as NativeTrainerConfig;

describe("full fine-tuning in the native trainer (generated tiny model, F32)", () => {
  const tmp = useTempDir("lori-full-");
  const next = rng(21);
  // Three fixed token strings, every token after the first supervised (pretraining-style data).
  const sequences = Array.from({ length: 3 }, () => {
    const tokens = [1, ...Array.from({ length: 15 }, () => 4 + Math.floor(next() * (VOCAB - 4)))];
    return { tokens, supervised: tokens.map((_, t) => t >= 1) };
  });
  const paths = { base: "", shards: "", trained: "" };
  const logits = { trained: new Float32Array(), base: new Float32Array() };
  let model: LlamaModel | undefined;
  let losses: number[] = [];

  beforeAll(async () => {
    ensureTrainerBuilt();
    paths.base = join(tmp.path, "base.gguf");
    // untied output and a tied-embedding variant are both llama; the writer unties (output.weight present)
    await createTinyModel({ out: paths.base, layers: 2, embd: 32, heads: 4, kvHeads: 2, ff: 64, seed: 5 });
    paths.shards = join(tmp.path, "train.bin");
    await writeTokenShards(paths.shards, sequences);
    paths.trained = join(tmp.path, "trained.gguf");
    const events = await run(
      fullConfig({ mode: "train", ...cpu, model: paths.base, shards: paths.shards, output: paths.trained, lr: 0.01, steps: 40, batch: 3 }),
    );
    losses = events.filter((e) => e.event === "step").map((e) => (e as { loss: number }).loss);
    for (const [key, path] of [
      ["trained", paths.trained],
      ["base", paths.base],
    ] as const) {
      const logitsOut = join(tmp.path, `${key}.bin`);
      await run({ mode: "logits", ...cpu, model: path, shards: paths.shards, logitsOut } as NativeTrainerConfig);
      const bytes = await readFile(logitsOut);
      logits[key] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }
    model = await (await getTestLlama()).loadModel({ modelPath: paths.trained });
  }, 300_000);

  afterAll(async () => {
    await model?.dispose();
  });

  it("matches finite differences on every kind of weight (gradcheck)", async () => {
    const events = await run(
      fullConfig({ mode: "gradcheck", ...cpu, model: paths.base, shards: paths.shards, batch: 2, max_len: 12, entries: 48, fd_eps: 0.02 }),
    );
    const g = last(events, "gradcheck") as unknown as { max_rel_err: number; norm_rel_err: number; checked: number };
    console.log(
      `full gradcheck: max rel err ${g.max_rel_err.toExponential(2)}, norm rel err ${g.norm_rel_err.toExponential(2)} over ${g.checked} entries`,
    );
    expect(g.checked).toBe(48);
    expect(g.max_rel_err).toBeLessThanOrEqual(1e-3);
    expect(g.norm_rel_err).toBeLessThanOrEqual(1e-3);
  });

  it("learns the data: the loss falls by more than 5x", () => {
    console.log(`full fine-tuning loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)} in ${losses.length} steps`);
    expect(losses).toHaveLength(40);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 5);
  });

  it("writes a GGUF model with the base's metadata and every weight in F32", async () => {
    const [base, trained] = await Promise.all([readGgufFile(paths.base), readGgufFile(paths.trained)]);
    expect(trained.metadata.get("general.architecture")?.value).toBe("llama");
    expect(trained.metadata.get("tokenizer.chat_template")?.value).toBe(base.metadata.get("tokenizer.chat_template")?.value);
    expect(trained.metadata.get("lori.training.steps")?.value).toBe("40");
    expect(trained.tensors.map((t) => t.name)).toEqual(base.tensors.map((t) => t.name));
  });

  it("node-llama-cpp reproduces the trainer's logits of the trained model within 1e-4", async () => {
    const context = await model!.createContext({ ...EXACT_CONTEXT_OPTIONS, contextSize: 64 });
    try {
      const { worst, effect: trainingEffect } = await trainerParity(context.getSequence(), sequences, logits, VOCAB, (n) => [0, 7, n - 1]);
      console.log(
        `full parity: max |trainer - node-llama-cpp| = ${worst.toExponential(2)} (training moved log-probs by up to ${trainingEffect.toFixed(2)})`,
      );
      expect(trainingEffect).toBeGreaterThan(1);
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      await context.dispose();
    }
  });
});
