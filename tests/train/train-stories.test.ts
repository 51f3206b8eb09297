import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { makeAdapter, type Adapter } from "../../src/lora/adapter.js";
import { readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { runNativeTrainer } from "../../src/train/native-trainer.js";
import { writeTokenShards, type TokenSequence } from "../../src/train/token-shards.js";
import { trainAdapter, type TrainAdapterOptions } from "../../src/train/train-adapter.js";
import { rng } from "../native/helpers.js";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { colourTask, CPU_RUN, ensureTrainerBuilt, f32Bits, referenceSequence, type QaRecord } from "./helpers.js";

const RANK = 8;
const task = colourTask();

describe.skipIf(skipWithoutStories)("training on stories260K", () => {
  const tmp = useTempDir("lori-train-stories-");
  const adaptersDir = () => join(tmp.path, "adapters");
  let model: LlamaModel;
  const seqs = (records: QaRecord[], eos = true): TokenSequence[] => records.map((r) => referenceSequence(model, r, eos));
  const train = (name: string, extra: Partial<TrainAdapterOptions> & Pick<TrainAdapterOptions, "data">) =>
    trainAdapter({
      base: storiesModelPath!,
      name,
      adaptersDir: adaptersDir(),
      rank: RANK,
      seed: 1234,
      lr: 0.01,
      batch: 8,
      steps: 60,
      run: CPU_RUN,
      ...extra,
    });
  const finalVal = (adapter: Adapter) => (adapter.config.lori!.training as { final_val_loss: number }).final_val_loss;

  beforeAll(async () => {
    ensureTrainerBuilt();
    model = await (await getTestLlama()).loadModel({ modelPath: storiesModelPath!, vocabOnly: true });
  }, 300_000);
  afterAll(async () => model?.dispose());

  it("LoRI-D learns the task: held-out loss falls by more than half; the adapter records its cost", async () => {
    const heldOut = join(tmp.path, "held-out.tokens");
    await writeTokenShards(heldOut, seqs(task.heldOut));
    const before = (
      await runNativeTrainer(
        { mode: "logits", model: storiesModelPath!, shards: heldOut, gpu: "off", threads: 1, logitsOut: join(tmp.path, "l.bin") },
        { forwardSigint: false },
      )
    ).at(-1) as { loss: number };
    const result = await train("colours", { data: { sequences: seqs(task.train), validation: seqs(task.heldOut), label: "colours" } });
    const after = finalVal(result.adapter);
    console.log(
      `[train] stories260K LoRI-D r${RANK}: held-out loss ${before.loss.toFixed(3)} -> ${after.toFixed(3)}`,
      JSON.stringify(result.adapter.config.lori!.training, (k, v) => (k === "phases" ? undefined : v)),
    );
    expect(after).toBeLessThan(0.5 * before.loss);
    const lori = result.adapter.config.lori!;
    expect(lori.variant).toBe("lori-d");
    expect(lori.a_init).toMatchObject({ seed: 1234 });
    expect(lori.base_fingerprint?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(lori.lineage.at(-1)).toMatchObject({ op: "train", method: "lori-d", seed: 1234 });
    const training = lori.training as Record<string, number>;
    expect(training.trainable_params).toBe(5 * RANK * (64 + 32 + 32 + 64 + 172 + 172 + 64));
    expect(training.tokens_per_s).toBeGreaterThan(0);
    expect(training.peak_rss_mb).toBeGreaterThan(0);
    expect(training.adapter_bytes).toBeGreaterThan(0);
    expect(result.adapter.modules.every((m) => m.a.kind === "seeded")).toBe(true);
  });

  describe("served", () => {
    let t: TestServer;
    beforeAll(async () => {
      t = await startTestServer({ models: [`stories=${storiesModelPath}`], adaptersDir: adaptersDir(), adaptersPollMs: 0 });
    });
    afterAll(async () => t?.server.close());

    const completionTokens = (r: QaRecord) => model.tokenize(r.completion, false, "trimLeadingSpace").length;

    it("answers at least 90 % of the held-out prompts with the trained answer (greedy, /v1/completions)", async () => {
      let correct = 0;
      for (const r of task.heldOut) {
        const res = await t.client.completions.create({
          model: "stories",
          prompt: r.prompt,
          max_tokens: completionTokens(r),
          temperature: 0,
          adapter: ["colours"],
        } as never);
        const text = res.choices[0]!.text;
        if (text === r.completion) correct++;
        else console.log(`[train] miss: ${JSON.stringify(r.prompt)} -> ${JSON.stringify(res.choices[0]!.text)}`);
      }
      console.log(`[train] held-out greedy accuracy ${correct}/${task.heldOut.length}`);
      expect(correct / task.heldOut.length).toBeGreaterThanOrEqual(0.9);
    });

    it("serves the same greedy output as node-llama-cpp with the compiled GGUF LoRA loaded directly", async () => {
      const file = join(tmp.path, "colours.gguf");
      await compileGgufLora(await readAdapterDir(join(adaptersDir(), "colours")), await readGgufFile(storiesModelPath!), file);
      const full = await (await getTestLlama()).loadModel({ modelPath: storiesModelPath! });
      const context = await full.createContext({ contextSize: 256, threads: 1, lora: { adapters: [{ filePath: file, scale: 1 }] } });
      try {
        for (const r of [...task.heldOut.slice(0, 3), { prompt: "Once upon a time", completion: "" }]) {
          const sequence = context.getSequence();
          const out: number[] = [];
          const prompt = [full.tokens.bos!, ...full.tokenize(r.prompt, false)];
          for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
            out.push(token);
            if (out.length >= 16) break;
          }
          sequence.dispose();
          const res = await t.client.completions.create({
            model: "stories",
            prompt: r.prompt,
            max_tokens: 16,
            temperature: 0,
            adapter: ["colours"],
          } as never);
          // Detokenized after the prompt, as the server does, so a leading "▁" keeps its space.
          expect(res.choices[0]!.text).toBe(full.detokenize(out as never, false, prompt));
        }
      } finally {
        await context.dispose();
        await full.dispose();
      }
    });
  });

  it("LoRI-S with a calibrated mask ends near LoRI-D and far below a random mask at the same sparsity", async () => {
    // Without EOS: stories260K cannot move EOS's logit (a constant ~5.3 nats floor that would hide the comparison).
    const data = { sequences: seqs(task.train, false), validation: seqs(task.heldOut, false), label: "colours-no-eos" };
    // Same steps for all; LoRI-S trains 10 % of B, so it gets a 10x learning rate (LoRI-D 0.003, LoRI-S 0.03);
    // the calibration phase is LoRI-D, so it runs at LoRI-D's rate.
    const steps = 30;
    const dense = await train("cmp-d", { data, steps, lr: 0.003 });
    const calibrated = await train("cmp-s", {
      data,
      steps,
      lr: 0.03,
      calibrateLr: 0.003,
      method: "lori-s",
      calibrate: true,
      sparsity: 0.9,
    });
    // A random mask: top-k |B| of an adapter whose B is uniform noise.
    const next = rng(99);
    const noise = makeAdapter(dense.adapter.modules.map((m) => ({ ...m, b: Float32Array.from(m.b, () => next()) })));
    await writeAdapterDir(join(adaptersDir(), "noise"), noise);
    const random = await train("cmp-r", { data, steps, lr: 0.03, method: "lori-s", maskFrom: "noise", sparsity: 0.9 });
    const [d, s, r] = [dense, calibrated, random].map((x) => finalVal(x.adapter));
    const phases = (calibrated.adapter.config.lori!.training as { phases: { phase: string; final_val_loss: number }[] }).phases;
    console.log(
      `[train] val loss after ${steps} steps: LoRI-D ${d!.toFixed(4)}, LoRI-S calibrated ${s!.toFixed(4)} (calibration phase ${phases[0]!.final_val_loss.toFixed(4)}), LoRI-S random mask ${r!.toFixed(4)}`,
    );
    expect(phases.map((p) => p.phase)).toEqual(["calibrate", "train"]);
    expect(calibrated.adapter.config.lori!.sparsity).toBeCloseTo(0.9, 3);
    expect(s!).toBeLessThanOrEqual(1.1 * d!);
    expect(s!).toBeLessThanOrEqual(0.5 * r!);
  });

  it("continual learning keeps every entry outside the new mask bit for bit (HF order in, GGUF order in the trainer)", async () => {
    const swapped = colourTask({ cat: "blue", dog: "red", ball: "pink", sun: "green", hat: "yellow" });
    const data = { sequences: seqs(swapped.train), validation: seqs(swapped.heldOut), label: "swapped" };
    const probe = await train("new-task-d", { data, steps: 20 });
    const result = await train("continued", { data, steps: 20, continueFrom: "colours", maskFrom: "new-task-d", sparsity: 0.9 });
    const old = await readAdapterDir(join(adaptersDir(), "colours"));
    // The mask, computed here independently: global top-k |B| of the probe adapter.
    const all = probe.adapter.modules.flatMap((m) => Array.from(m.b, Math.abs));
    const k = Math.floor(0.1 * all.length);
    const threshold = [...all].sort((a, b) => b - a)[k - 1]!;
    let inside = 0;
    let changedInside = 0;
    result.adapter.modules.forEach((m, i) => {
      const before = old.modules[i]!;
      const mask = probe.adapter.modules[i]!;
      expect([m.layer, m.module]).toEqual([before.layer, before.module]);
      for (let j = 0; j < m.b.length; j++) {
        if (Math.abs(mask.b[j]!) >= threshold) {
          inside++;
          if (f32Bits(m.b[j]!) !== f32Bits(before.b[j]!)) changedInside++;
        } else if (f32Bits(m.b[j]!) !== f32Bits(before.b[j]!)) {
          throw new Error(`layer ${m.layer} ${m.module} B[${j}] changed outside the mask`);
        }
      }
    });
    expect(inside).toBe(k);
    expect(changedInside).toBeGreaterThan(0.9 * inside);
    expect(result.adapter.modules.every((m) => m.a.kind === "seeded" && m.a.seed === 1234)).toBe(true);
    expect(result.adapter.config.lori!.lineage.map((l) => l.op)).toEqual(["train", "train"]);
  });

  it("writes nothing for a bad data file and refuses an existing name", async () => {
    const bad = join(tmp.path, "bad.jsonl");
    await writeFile(bad, '{"prompt": "a", "completion": "b"}\n{"prompt": 1}\n');
    await expect(train("bad", { data: { file: bad } })).rejects.toThrow("bad.jsonl line 2: 'completion' must be a string");
    await expect(train("colours", { data: { sequences: seqs(task.train), label: "x" } })).rejects.toThrow(/already exists/);
    const { readdir } = await import("node:fs/promises");
    expect((await readdir(adaptersDir())).filter((n) => n.includes("bad"))).toEqual([]);
  });
});
