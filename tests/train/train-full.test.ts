import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { modelCreateCommand } from "../../src/cli/commands/model-create.js";
import { trainCommand } from "../../src/cli/commands/train.js";
import { countLlamaParameters } from "../../src/model/llama-config.js";
import { EMBEDDED_SHAPE, tinyModelConfig } from "../../src/model/tiny-model.js";
import { TrainInterrupted } from "../../src/train/train-common.js";
import { resumeFullTraining, trainFull } from "../../src/train/train-full.js";
import { fullWorkDirFor } from "../../src/train/train-plan.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { CPU_RUN, ensureTrainerBuilt, toJsonl } from "./helpers.js";

const SENTENCE = "the cat sat on the mat.";

describe("lori-server train --method full on a random tiny model", () => {
  const tmp = useTempDir("lori-train-full-");
  const p = { base: "", data: "", out: "" };

  beforeAll(async () => {
    ensureTrainerBuilt();
    p.base = join(tmp.path, "base.gguf");
    p.data = join(tmp.path, "text.jsonl");
    p.out = join(tmp.path, "tuned.gguf");
    expect((await runCommand(modelCreateCommand, ["create", "--out", p.base])).code).toBe(0);
    await writeFile(p.data, toJsonl(Array.from({ length: 40 }, () => ({ text: SENTENCE }))));
  }, 60_000);

  it("learns a repeated sentence: the loss falls, the GGUF loads in node-llama-cpp and greedily continues it", async () => {
    const { code, stdout } = await runCommand(trainCommand, [
      "--method",
      "full",
      "--base",
      p.base,
      "--data",
      p.data,
      "--out",
      p.out,
      "--steps",
      "30",
      "--lr",
      "1e-3",
      "--batch",
      "4",
      "--seed",
      "1",
      "--val-fraction",
      "0",
      "--threads",
      "1",
      "--gpu",
      "off",
      "--json",
    ]);
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const start = events.find((e) => e.event === "start")!;
    // Every weight trains: `model create` writes the embedded shape, norms and the untied LM head included.
    expect(start).toMatchObject({ method: "full", rank: 0, trainable_params: countLlamaParameters(tinyModelConfig(EMBEDDED_SHAPE)) });
    const losses = events.filter((e) => e.event === "step").map((e) => e.loss as number);
    expect(losses).toHaveLength(30);
    console.log(
      `[train-full] loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}, ${String(start.trainable_params)} trainable params`,
    );
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 10);
    expect(events.at(-1)).toMatchObject({
      event: "model",
      model: p.out,
      method: "full",
      steps: 30,
      trainable_params: start.trainable_params,
    });
    expect(existsSync(fullWorkDirFor(p.out))).toBe(false);

    const model = await (await getTestLlama()).loadModel({ modelPath: p.out });
    const context = await model.createContext({ contextSize: 64, threads: 1 });
    try {
      const sequence = context.getSequence();
      const prompt = [model.tokens.bos!, ...model.tokenize("the cat", false)];
      const out: number[] = [];
      for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        out.push(token);
        if (out.length >= SENTENCE.length - "the cat".length + 1) break;
      }
      expect(model.detokenize(out as never, true)).toBe(`${SENTENCE.slice("the cat".length)}<|endoftext|>`);
    } finally {
      await context.dispose();
      await model.dispose();
    }
  }, 60_000);

  it("an interrupted and resumed run writes the same model, byte for byte, as the uninterrupted one", async () => {
    const out = join(tmp.path, "resumed.gguf");
    const options = { base: p.base, data: { file: p.data }, out, steps: 30, lr: 1e-3, batch: 4, seed: 1, valFraction: 0 };
    const abort = new AbortController();
    const failure = await trainFull({
      ...options,
      run: { ...CPU_RUN, signal: abort.signal, onProgress: (e) => e.event.event === "step" && e.event.step === 3 && abort.abort() },
    }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TrainInterrupted);
    expect(existsSync(out)).toBe(false);
    const result = await resumeFullTraining(out, CPU_RUN);
    expect(result.phase.resumed_from_step).toBeGreaterThanOrEqual(3);
    expect(result.phase.resumed_from_step).toBeLessThan(30);
    // The first test trained the same plan through the CLI without stopping.
    expect((await readFile(out)).equals(await readFile(p.out))).toBe(true);
    expect(existsSync(fullWorkDirFor(out))).toBe(false);
  }, 60_000);
});
