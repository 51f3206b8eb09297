import { join } from "node:path";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { createByteTokenizer } from "../../src/model/byte-tokenizer.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { unpermuteRowsForRope } from "../../src/model/llama-permute.js";
import { SeededRandom } from "../../src/model/seeded-random.js";
import { tinyModelConfig } from "../../src/model/tiny-model.js";
import { writeLlamaGguf } from "../../src/model/write-llama-gguf.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { logSoftmax, referenceLlamaLogits, type ReferenceLoraAdapter } from "../support/reference-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";

// llama.cpp computes in float32, the reference in float64: with EXACT_CONTEXT_OPTIONS (F32 KV cache,
// no flash attention) they agree to ~1e-6; llama.cpp's defaults would differ by ~1-2e-3.
const TOLERANCE = 1e-4;
const config = tinyModelConfig({ layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 96 });
const weights = createRandomHfLlamaWeights(config, 42);
const sequences: number[][] = [
  [256], // BOS alone
  [256, ...Buffer.from("Hello, world")],
  [256, 258, ...Buffer.from("user\nWhat is 2+2?"), 259, 10],
  Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % config.vocabSize),
];

async function loadGguf(dir: string, name: string, modelWeights: Map<string, Float32Array>) {
  const modelPath = join(dir, name);
  await writeLlamaGguf(modelPath, { config, weights: modelWeights, dtype: "f32", tokenizer: createByteTokenizer() });
  const model = await (await getTestLlama()).loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 128, ...EXACT_CONTEXT_OPTIONS });
  return { model, context };
}

async function worstDifference(context: LlamaContext, adapters?: ReferenceLoraAdapter[]): Promise<number> {
  const sequence = context.getSequence();
  try {
    let worst = 0;
    for (const tokens of sequences) {
      const expected = logSoftmax(referenceLlamaLogits(config, weights, tokens, { adapters }).at(-1)!);
      const actual = await getLastPositionLogProbs(sequence, tokens as Token[]);
      worst = Math.max(worst, maxAbsDifference(actual, expected));
    }
    return worst;
  } finally {
    sequence.dispose();
  }
}

describe("node-llama-cpp vs the float64 HF-layout reference", () => {
  const dir = useTempDir();
  const loaded: Array<{ model: LlamaModel; context: LlamaContext }> = [];
  afterAll(async () => {
    for (const { model, context } of loaded) {
      await context.dispose();
      await model.dispose();
    }
  });
  const load = async (name: string, modelWeights: Map<string, Float32Array>) => {
    const result = await loadGguf(dir.path, name, modelWeights);
    loaded.push(result);
    return result.context;
  };
  let baseContext: Promise<LlamaContext> | undefined;
  const loadBase = () => (baseContext ??= load("base.gguf", weights));

  it("agrees on next-token log-probabilities for every test sequence", async () => {
    expect(await worstDifference(await loadBase())).toBeLessThan(TOLERANCE);
  });

  it("agrees on all positions of a sequence, not only the last", async () => {
    const context = await loadBase();
    const tokens = sequences[2]!;
    const reference = referenceLlamaLogits(config, weights, tokens);
    const sequence = context.getSequence();
    for (let end = 1; end <= tokens.length; end += 5) {
      const actual = await getLastPositionLogProbs(sequence, tokens.slice(0, end) as Token[]);
      expect(maxAbsDifference(actual, logSoftmax(reference[end - 1]!))).toBeLessThan(TOLERANCE);
    }
    sequence.dispose();
  });

  it("catches a missing q/k permutation (the comparison has teeth)", async () => {
    // Pre-applying the inverse makes writeLlamaGguf store q/k in HF order, as a naive converter would.
    const unpermuted = new Map(weights);
    const kvDim = (config.nEmbd / config.nHead) * config.nHeadKv;
    for (let layer = 0; layer < config.nLayer; layer++) {
      const q = `model.layers.${layer}.self_attn.q_proj.weight`;
      const k = `model.layers.${layer}.self_attn.k_proj.weight`;
      unpermuted.set(q, unpermuteRowsForRope(weights.get(q)!, config.nEmbd, config.nEmbd, config.nHead));
      unpermuted.set(k, unpermuteRowsForRope(weights.get(k)!, kvDim, config.nEmbd, config.nHeadKv));
    }
    const context = await load("unpermuted.gguf", unpermuted);
    expect(await worstDifference(context)).toBeGreaterThan(100 * TOLERANCE);
  });

  it("applies PEFT LoRA as W x + (alpha/r) B A x (checked against a merged model)", async () => {
    const rank = 4;
    const alpha = 8;
    const random = new SeededRandom(99);
    const tensors = new Map<string, Float32Array>();
    const merged = new Map(weights);
    const kvDim = (config.nEmbd / config.nHead) * config.nHeadKv;
    const targets: Array<[string, number, number]> = [
      ["self_attn.q_proj", config.nEmbd, config.nEmbd],
      ["self_attn.k_proj", kvDim, config.nEmbd],
      ["self_attn.v_proj", kvDim, config.nEmbd],
      ["self_attn.o_proj", config.nEmbd, config.nEmbd],
      ["mlp.gate_proj", config.nFf, config.nEmbd],
      ["mlp.up_proj", config.nFf, config.nEmbd],
      ["mlp.down_proj", config.nEmbd, config.nFf],
    ];
    for (let layer = 0; layer < config.nLayer; layer++) {
      for (const [module, out, inDim] of targets) {
        const name = `model.layers.${layer}.${module}`;
        const a = random.fillUniform(new Float32Array(rank * inDim), 1 / Math.sqrt(inDim));
        const b = random.fillUniform(new Float32Array(out * rank), 0.3);
        tensors.set(`base_model.model.${name}.lora_A.weight`, a);
        tensors.set(`base_model.model.${name}.lora_B.weight`, b);
        const w = Float32Array.from(weights.get(`${name}.weight`)!);
        for (let o = 0; o < out; o++)
          for (let i = 0; i < inDim; i++) {
            let delta = 0;
            for (let r = 0; r < rank; r++) delta += b[o * rank + r]! * a[r * inDim + i]!;
            w[o * inDim + i]! += (alpha / rank) * delta;
          }
        merged.set(`${name}.weight`, w);
      }
    }
    const context = await load("merged.gguf", merged);
    const adapters = [{ tensors, alpha }];
    expect(await worstDifference(context, adapters)).toBeLessThan(TOLERANCE);
    // ...and the adapter really changes the output.
    const base = logSoftmax(referenceLlamaLogits(config, weights, sequences[1]!).at(-1)!);
    const adapted = logSoftmax(referenceLlamaLogits(config, weights, sequences[1]!, { adapters }).at(-1)!);
    expect(maxAbsDifference(base, adapted)).toBeGreaterThan(0.05);
  });
});
