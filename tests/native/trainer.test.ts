import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

import { NativeTrainerError, NativeTrainerRun, type TrainConfig } from "../../src/train/native-trainer.js";
import { writeTokenShards, type TokenSequence } from "../../src/train/token-shards.js";
import { useTempDir } from "../support/temp-dir.js";
import {
  bits,
  cpu,
  ensureTrainerBuilt,
  haveStories,
  last,
  only,
  projectionShapes,
  readSafetensors,
  repoRoot,
  rng,
  run,
  storiesPath,
  writeSafetensors,
  type F32Tensor,
} from "./helpers.js";

// The tiny random model of `make-model` defaults: llama, d 32, 2 layers, 4 heads, 2 kv heads (GQA), ff 48, vocab 64.
const TINY = { d: 32, kvOut: 16, ff: 48, layers: 2, vocab: 64 };
const RANK = 4;

function randomSequences(seed: number, count: number, vocab: number): TokenSequence[] {
  const next = rng(seed);
  return Array.from({ length: count }, () => {
    const length = 8 + Math.floor(next() * 8);
    const tokens = Array.from({ length }, () => Math.floor(next() * vocab));
    // a 4-token unsupervised prompt, then a response with one unsupervised hole
    const supervised = tokens.map((_, t) => t >= 4 && t !== 6);
    return { tokens, supervised };
  });
}

function randomTensors(seed: number, fill: (next: () => number) => number): Map<string, F32Tensor> {
  const next = rng(seed);
  const tensors = new Map<string, F32Tensor>();
  for (let layer = 0; layer < TINY.layers; layer++) {
    for (const [stem, [out]] of Object.entries(projectionShapes(TINY.d, TINY.kvOut, TINY.ff))) {
      const data = new Float32Array(out * RANK).map(() => fill(next));
      tensors.set(`blk.${layer}.${stem}.lora_b`, { shape: [out, RANK], data });
    }
  }
  return tensors;
}

describe("native trainer on a tiny random llama", () => {
  const tmp = useTempDir("lori-native-");
  const paths = { model: "", quantized: "", shards: "", mask: "" };

  beforeAll(async () => {
    ensureTrainerBuilt();
    paths.model = join(tmp.path, "tiny.gguf");
    paths.quantized = join(tmp.path, "tiny-q8.gguf");
    paths.shards = join(tmp.path, "train.bin");
    paths.mask = join(tmp.path, "mask.safetensors");
    await run({ mode: "make-model", output: paths.model, seed: 1 });
    await run({ mode: "make-model", output: paths.quantized, seed: 2, weightType: "q8_0", tiedEmbeddings: true });
    await writeTokenShards(paths.shards, randomSequences(7, 8, TINY.vocab));
    await writeSafetensors(
      paths.mask,
      randomTensors(11, (next) => (next() < 0.3 ? 1 : 0)),
    );
  }, 300_000);

  const base = () => ({ ...cpu, model: paths.model, shards: paths.shards, rank: RANK, alpha: 8, seed: 5 });

  it("computes dB (lori-d) that matches central finite differences within 1e-3", async () => {
    const gc = last(await run({ mode: "gradcheck", ...base(), method: "lori-d", entries: 40 }), "gradcheck");
    expect(gc.checked).toBe(40);
    expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
    expect(gc.norm_rel_err).toBeLessThanOrEqual(1e-3);
  });

  it("computes dA and dB (lora) that match finite differences within 1e-3", async () => {
    const gc = last(await run({ mode: "gradcheck", ...base(), method: "lora", entries: 40 }), "gradcheck");
    expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
    expect(gc.norm_rel_err).toBeLessThanOrEqual(1e-3);
  });

  it("gives masked B entries exactly zero gradient (lori-s)", async () => {
    const gc = last(await run({ mode: "gradcheck", ...base(), method: "lori-s", mask: paths.mask, entries: 40 }), "gradcheck");
    expect(gc.masked_entries).toBeGreaterThan(0);
    expect(gc.masked_nonzero_grads).toBe(0);
    expect(gc.masked_fd_max_abs).toBe(0);
    expect(gc.max_rel_err).toBeLessThanOrEqual(1e-3);
  });

  // Not a finite-difference check: on CPU a Q8_0 matmul also quantizes its activations, so the loss is
  // piecewise constant at fine scale (as in llama.cpp inference). Training through it must still work.
  it("trains through a Q8_0 base with tied embeddings", async () => {
    const output = join(tmp.path, "q8.safetensors");
    const events = await run({
      mode: "train",
      ...base(),
      model: paths.quantized,
      frozenWeights: "native",
      output,
      steps: 30,
      batch: 4,
      lr: 0.02,
      shuffle: false,
    });
    expect(last(events, "start").weight_types).toContain("q8_0");
    const steps = only(events, "step");
    const firstEpoch = steps.slice(0, 2).reduce((s, e) => s + e.loss, 0);
    const lastEpoch = steps.slice(-2).reduce((s, e) => s + e.loss, 0);
    expect(lastEpoch).toBeLessThan(0.5 * firstEpoch);
  });

  it("keeps masked-out B entries at exactly 0.0 after training", async () => {
    const output = join(tmp.path, "masked.safetensors");
    const events = await run({ mode: "train", ...base(), method: "lori-s", mask: paths.mask, output, steps: 5, batch: 2, lr: 0.01 });
    const done = last(events, "done");
    const mask = await readSafetensors(paths.mask);
    const trained = await readSafetensors(output);
    let inside = 0;
    let changed = 0;
    for (const [name, m] of mask.tensors) {
      const b = trained.tensors.get(name)!.data;
      m.data.forEach((keep, i) => {
        if (keep === 0) expect(bits(b[i]!), `${name}[${i}]`).toBe(0);
        else {
          inside++;
          if (b[i] !== 0) changed++;
        }
      });
    }
    expect(done.trainable_params).toBe(inside);
    expect(changed).toBeGreaterThan(inside * 0.9);
  });

  it("keeps entries outside the mask at their init values bit for bit (continual learning)", async () => {
    const init = join(tmp.path, "init.safetensors");
    const initB = randomTensors(21, (next) => (next() - 0.5) * 0.2);
    await writeSafetensors(init, initB);
    const output = join(tmp.path, "continual.safetensors");
    await run({ mode: "train", ...base(), method: "lori-s", mask: paths.mask, initB: init, output, steps: 5, batch: 2, lr: 0.01 });
    const mask = await readSafetensors(paths.mask);
    const trained = await readSafetensors(output);
    let changedInside = 0;
    let inside = 0;
    for (const [name, m] of mask.tensors) {
      const before = initB.get(name)!.data;
      const after = trained.tensors.get(name)!.data;
      m.data.forEach((keep, i) => {
        if (keep === 0) expect(bits(after[i]!), `${name}[${i}]`).toBe(bits(before[i]!));
        else {
          inside++;
          if (bits(after[i]!) !== bits(before[i]!)) changedInside++;
        }
      });
    }
    expect(changedInside).toBeGreaterThan(inside * 0.9);
  });

  it("reports the cross-entropy that TypeScript computes from its logits (prompt tokens unsupervised)", async () => {
    const adapter = join(tmp.path, "ce-adapter.safetensors");
    await run({ mode: "train", ...base(), output: adapter, steps: 3, lr: 0.05 });
    const logitsOut = join(tmp.path, "logits.bin");
    const done = last(await run({ mode: "logits", ...cpu, model: paths.model, shards: paths.shards, adapter, logitsOut }), "done");
    const sequences = randomSequences(7, 8, TINY.vocab);
    const bytes = await readFile(logitsOut);
    const logits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    let nll = 0;
    let offset = 0;
    for (const seq of sequences) {
      for (let t = 1; t < seq.tokens.length; t++) {
        if (!seq.supervised[t]) continue;
        const row = logits.subarray(offset + (t - 1) * TINY.vocab, offset + t * TINY.vocab);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0));
        nll += lse - row[seq.tokens[t]!]!;
      }
      offset += seq.tokens.length * TINY.vocab;
    }
    const reference = nll / sequences.length;
    expect(done.n_targets).toBe(sequences.reduce((n, s) => n + s.supervised.slice(1).filter(Boolean).length, 0));
    expect(Math.abs(done.loss! - reference) / reference).toBeLessThan(1e-5);
  });

  it("resumes from a SIGINT checkpoint to the same adapter as an uninterrupted run", async () => {
    const config = (output: string): TrainConfig => ({ mode: "train", ...base(), output, steps: 12, batch: 2, gradAccum: 2, lr: 0.01 });
    const straight = join(tmp.path, "straight.safetensors");
    await run(config(straight));

    const checkpoint = join(tmp.path, "resume.ckpt.safetensors");
    const resumed = join(tmp.path, "resumed.safetensors");
    const first = await NativeTrainerRun.start({ ...config(resumed), steps: 100_000, checkpoint }, { forwardSigint: false });
    const seen = [];
    for await (const event of first) {
      seen.push(event);
      if (event.event === "step" && event.step === 2) first.interrupt();
    }
    expect((await first.exit).exitCode).toBe(130);
    const interrupted = last(seen, "interrupted");
    expect(interrupted.checkpoint).toBe(checkpoint);
    expect(interrupted.step).toBeGreaterThanOrEqual(2);
    expect(interrupted.step).toBeLessThan(12);
    expect(existsSync(resumed)).toBe(false);

    const events = await run({ ...config(resumed), checkpoint, resume: true });
    expect(last(events, "start").start_step).toBe(interrupted.step);
    expect(only(events, "step")[0]!.step).toBe(interrupted.step + 1);
    const a = await readSafetensors(straight);
    const b = await readSafetensors(resumed);
    for (const [name, t] of a.tensors) {
      expect(Buffer.from(b.tensors.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
    }
  });

  it("refuses a non-llama base by its architecture name (exit 3)", async () => {
    const gemma = join(tmp.path, "gemma.gguf");
    const bytes = Buffer.from(await readFile(paths.model));
    const key = bytes.indexOf("general.architecture");
    const value = bytes.indexOf("llama", key);
    bytes.write("gemma", value, "latin1");
    await writeFile(gemma, bytes);
    const failure = await run({ mode: "train", ...base(), model: gemma, output: join(tmp.path, "x.safetensors"), steps: 1 }).catch(
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(NativeTrainerError);
    expect((failure as NativeTrainerError).kind).toBe("input");
    expect((failure as NativeTrainerError).message).toContain('architecture "gemma"');
  });

  it("rejects unknown config keys as a usage error (exit 2)", async () => {
    const failure = await run({ mode: "gradcheck", ...base(), ...({ learningRate: 1 } as object) } as never).catch((e: unknown) => e);
    expect((failure as NativeTrainerError).exitCode).toBe(2);
    expect((failure as NativeTrainerError).message).toContain("learning_rate");
  });
});

describe("seeded A", () => {
  const vectorsPath = join(repoRoot, "tests", "fixtures", "seeded-a-vectors.json");
  beforeAll(() => ensureTrainerBuilt(), 300_000);

  it("passes the Philox4x32-10 known-answer test", async () => {
    const events = await run({ mode: "seeded-a", queries: [] });
    expect(last(events, "start").philox_kat_ok).toBe(true);
  });

  it.skipIf(!existsSync(vectorsPath))("equals the committed test vectors bit for bit", async () => {
    const { vectors } = JSON.parse(await readFile(vectorsPath, "utf8")) as {
      vectors: { seed: number; layer: number; module: string; row: number; col: number; inFeatures: number; bits: string }[];
    };
    const events = only(await run({ mode: "seeded-a", queries: vectors as never }), "seeded_a");
    expect(events).toHaveLength(vectors.length);
    events.forEach((e, i) => expect(e.bits, JSON.stringify(vectors[i])).toBe(vectors[i]!.bits));
  });
});

describe.skipIf(!haveStories)("native trainer on stories260K", () => {
  const tmp = useTempDir("lori-native-stories-");
  beforeAll(() => ensureTrainerBuilt(), 300_000);

  it("learns a repeated-pattern response within a few seconds", async () => {
    const next = rng(3);
    const pattern = [300, 301, 302, 303, 304, 305];
    const sequences = Array.from({ length: 16 }, () => {
      const prompt = [1, ...Array.from({ length: 4 }, () => 3 + Math.floor(next() * 490))];
      const response = Array.from({ length: 24 }, (_, i) => pattern[i % pattern.length]!);
      return { tokens: [...prompt, ...response], supervised: [...prompt.map(() => false), ...response.map(() => true)] };
    });
    const shards = join(tmp.path, "pattern.bin");
    await writeTokenShards(shards, sequences);
    const output = join(tmp.path, "pattern.safetensors");
    const events = await run({
      mode: "train",
      ...cpu,
      model: storiesPath,
      shards,
      output,
      method: "lori-d",
      rank: 8,
      alpha: 16,
      seed: 1,
      lr: 0.01,
      steps: 20,
      batch: 4,
      evalFraction: 0.25,
      evalInterval: 10,
    });
    const steps = only(events, "step");
    const done = last(events, "done");
    const evals = only(events, "eval");
    expect(steps[steps.length - 1]!.loss).toBeLessThan(0.05 * steps[0]!.loss);
    expect(evals[evals.length - 1]!.nll_per_token).toBeLessThan(0.05);
    expect(done.trainable_params).toBe(5 * 8 * (64 + 32 + 32 + 64 + 172 + 172 + 64));
    expect(done.elapsed_s).toBeLessThan(10);
    expect(done.peak_rss_mb).toBeGreaterThan(0);
    console.log(
      `stories260K lori-d r8: ${done.tokens_per_s!.toFixed(0)} tokens/s, final loss ${done.final_loss}, peak RSS ${done.peak_rss_mb} MiB`,
    );
  });
});
