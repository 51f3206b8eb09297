// The losses `train` and `eval --data` report per supervised token, against an independent float64 forward pass
// (tests/support/reference-llama.ts) of the same generated model, with and without a trained adapter.
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evalCommand } from "../../src/cli/commands/eval.js";
import { trainCommand } from "../../src/cli/commands/train.js";
import { materializeA } from "../../src/lora/adapter.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { tinyModelConfig } from "../../src/model/tiny-model.js";
import { logSoftmax, referenceLlamaLogits, type ReferenceLoraAdapter } from "../support/reference-llama.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { ensureTrainerBuilt, referenceSequence, tinyTrainWorkspace, type QaRecord, type TinyTrainWorkspace } from "./helpers.js";

// The trainer computes in F32 over a few dozen tokens; the reference in float64.
const TOLERANCE = 1e-4; // nats per token, absolute

// tinyTrainWorkspace's model: createTinyModel with these options and its default weight seed 0.
const config = tinyModelConfig({ layers: 1, embd: 32, heads: 4, kvHeads: 2, ff: 48 });
const weights = createRandomHfLlamaWeights(config, 0);

const records: QaRecord[] = Array.from({ length: 6 }, (_, i) => ({ prompt: `Q: ${i} + 1 =\nA:`, completion: ` ${i + 1}` }));

interface AdapterEvent {
  event: string;
  first_train_loss_per_token?: number;
  final_val_loss_per_token?: number;
  loss_units?: Record<string, string>;
}

describe("loss per supervised token (train and eval --data) against a float64 reference", () => {
  const tmp = useTempDir("lori-loss-");
  let w: TinyTrainWorkspace;
  let vocab: LlamaModel;

  beforeAll(async () => {
    ensureTrainerBuilt();
    w = await tinyTrainWorkspace(tmp.path, records);
    vocab = await (await getLlama({ gpu: false, logLevel: LlamaLogLevel.error })).loadModel({ modelPath: w.model, vocabOnly: true });
  });
  afterAll(async () => {
    await vocab?.dispose();
  });

  /** Mean NLL per supervised token of `records` (float64), tokenized independently of src/train. */
  function referenceLossPerToken(adapters: ReferenceLoraAdapter[]): number {
    let nll = 0;
    let targets = 0;
    for (const record of records) {
      const { tokens, supervised } = referenceSequence(vocab, record, true);
      const logits = referenceLlamaLogits(config, weights, tokens, { adapters });
      for (let t = 1; t < tokens.length; t++) {
        if (!supervised[t]) continue;
        nll -= logSoftmax(logits[t - 1]!)[tokens[t]!]!;
        targets++;
      }
    }
    return nll / targets;
  }

  async function referenceAdapter(name: string, scale: number): Promise<ReferenceLoraAdapter> {
    const adapter = await readAdapterDir(join(w.adapters, name));
    const tensors = new Map<string, Float32Array>();
    for (const m of adapter.modules) {
      tensors.set(`${peftPrefix(m.layer, m.module)}.lora_A.weight`, materializeA(m));
      tensors.set(`${peftPrefix(m.layer, m.module)}.lora_B.weight`, m.b);
    }
    return { tensors, alpha: adapter.modules[0]!.alpha, scale };
  }

  it("train: the first step over every sequence (B = 0) is the base model's loss per token", async () => {
    // One batch of all six records: the first step's loss covers them all, before any update.
    const { code, stdout } = await runCommand(trainCommand, [
      "--base",
      w.model,
      "--data",
      w.data,
      "--out",
      "first",
      "--adapters-dir",
      w.adapters,
      "--method",
      "lori-d",
      "--rank",
      "4",
      "--steps",
      "3",
      "--batch",
      "6",
      "--val-fraction",
      "0",
      "--lr",
      "0.05",
      "--seed",
      "5",
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
      .map((l) => JSON.parse(l) as AdapterEvent & { step?: number; loss_per_token?: number });
    const summary = events.find((e) => e.event === "adapter")!;
    const base = referenceLossPerToken([]);
    expect(Math.abs(summary.first_train_loss_per_token! - base)).toBeLessThan(TOLERANCE);
    expect(events.find((e) => e.event === "step" && e.step === 1)!.loss_per_token).toBe(summary.first_train_loss_per_token);
    expect(summary.loss_units).toMatchObject({ loss_per_token: "nats per supervised token" });
  });

  it("eval --data: the loss per token of the base and of a trained adapter at weights 1 and 0.5", async () => {
    const evalLoss = async (adapter: string[]) => {
      const { code, stdout } = await runCommand(evalCommand, [
        "--data",
        w.data,
        "--model",
        w.model,
        "--adapters-dir",
        w.adapters,
        ...adapter,
        "--max-tokens",
        "4",
        "--gpu",
        "off",
        "--threads",
        "1",
        "--json",
      ]);
      expect(code).toBe(0);
      const report = JSON.parse(stdout) as {
        data: { examples: number; exact_match: number; loss_per_token: number | null; loss_tokens: number };
      };
      expect(report.data.examples).toBe(records.length);
      expect(report.data.exact_match).toBeGreaterThanOrEqual(0);
      return report.data.loss_per_token!;
    };
    const base = referenceLossPerToken([]);
    const trained = referenceLossPerToken([await referenceAdapter("first", 1)]);
    const half = referenceLossPerToken([await referenceAdapter("first", 0.5)]);
    // The adapter moved the loss by more than the tolerance, so the comparisons below can tell them apart.
    expect(Math.abs(trained - base)).toBeGreaterThan(100 * TOLERANCE);
    expect(Math.abs(half - trained)).toBeGreaterThan(100 * TOLERANCE);
    expect(Math.abs((await evalLoss([])) - base)).toBeLessThan(TOLERANCE);
    expect(Math.abs((await evalLoss(["--adapter", "first"])) - trained)).toBeLessThan(TOLERANCE);
    expect(Math.abs((await evalLoss(["--adapter", "first:0.5"])) - half)).toBeLessThan(TOLERANCE);
  });
});
