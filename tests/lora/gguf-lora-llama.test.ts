import { join } from "node:path";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { createByteTokenizer } from "../../src/model/byte-tokenizer.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { tinyModelConfig } from "../../src/model/tiny-model.js";
import { writeLlamaGguf } from "../../src/model/write-llama-gguf.js";
import { makeAdapter, materializeA, moduleScale, type Adapter } from "../../src/lora/adapter.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { mergeCat } from "../../src/lora/merge.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { logSoftmax, referenceLlamaLogits, type ReferenceLoraAdapter } from "../support/reference-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { rng, tinyModules } from "./helpers.js";

// llama.cpp (float32, EXACT_CONTEXT_OPTIONS) vs the float64 HF-layout reference agree to ~1e-6 without
// adapters (tests/model/reference-parity.test.ts); 1e-4 leaves room for the adapter's extra float32 ops.
const TOLERANCE = 1e-4;
const config = tinyModelConfig({});
const weights = createRandomHfLlamaWeights(config, 42);
const sequences: number[][] = [
  [256, ...Buffer.from("Hello, world")],
  Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % config.vocabSize),
];

/** The reference's PEFT view of an adapter: one alpha for all, so each module's scale is folded into B. */
function referenceAdapter(adapter: Adapter, weight = 1): ReferenceLoraAdapter {
  const tensors = new Map<string, Float32Array>();
  for (const m of adapter.modules) {
    const fold = weight * moduleScale(m, adapter.config.use_rslora) * m.rank; // reference applies 1 / r
    tensors.set(`${peftPrefix(m.layer, m.module)}.lora_A.weight`, materializeA(m));
    tensors.set(
      `${peftPrefix(m.layer, m.module)}.lora_B.weight`,
      Float32Array.from(m.b, (x) => x * fold),
    );
  }
  return { tensors, alpha: 1 };
}

describe("compiled GGUF LoRAs in node-llama-cpp", () => {
  const dir = useTempDir();
  let model: LlamaModel;
  let baseHeader: GgufFile;
  const contexts: LlamaContext[] = [];
  let counter = 0;

  beforeAll(async () => {
    const modelPath = join(dir.path, "base.gguf");
    await writeLlamaGguf(modelPath, { config, weights, dtype: "f32", tokenizer: createByteTokenizer() });
    baseHeader = await readGgufFile(modelPath);
    model = await (await getTestLlama()).loadModel({ modelPath });
  });
  afterAll(async () => {
    for (const context of contexts) await context.dispose();
    await model?.dispose();
  });

  /** Log-probabilities at the last position of every test sequence, with the given GGUF LoRA (or none). */
  async function logProbs(loraPath?: string, scale = 1): Promise<Float64Array[]> {
    const context = await model.createContext({
      contextSize: 128,
      ...EXACT_CONTEXT_OPTIONS,
      ...(loraPath ? { lora: { adapters: [{ filePath: loraPath, scale }] } } : {}),
    });
    contexts.push(context);
    const sequence = context.getSequence();
    const out: Float64Array[] = [];
    for (const tokens of sequences) out.push(await getLastPositionLogProbs(sequence, tokens as Token[]));
    sequence.dispose();
    return out;
  }

  function reference(adapters: ReferenceLoraAdapter[]): Float64Array[] {
    return sequences.map((tokens) => logSoftmax(referenceLlamaLogits(config, weights, tokens, { adapters }).at(-1)!));
  }

  const worst = (a: Float64Array[], b: Float64Array[]) => Math.max(...a.map((x, i) => maxAbsDifference(x, b[i]!)));

  async function compile(adapter: Adapter, dtype: "F32" | "F16" = "F32", qkRowOrder: "hf" | "gguf" = "hf"): Promise<string> {
    // Distinct paths: node-llama-cpp caches adapters by path for the model's lifetime.
    const path = join(dir.path, `lora-${counter++}.gguf`);
    await compileGgufLora(adapter, baseHeader, path, { dtype, qkRowOrder });
    return path;
  }

  it("an adapter whose B is all zero leaves the output unchanged", async () => {
    const zero = makeAdapter(tinyModules({ seed: 3 }).map((m) => ({ ...m, b: new Float32Array(m.b.length) })));
    const base = await logProbs();
    expect(worst(await logProbs(await compile(zero)), base)).toBeLessThanOrEqual(1e-6);
    expect(worst(base, reference([]))).toBeLessThan(TOLERANCE);
  });

  it("a LoRI-S adapter (seeded A, sparse B, mixed ranks and alphas, rsLoRA) matches the float64 reference", async () => {
    const modules = tinyModules({ seed: 11, sparsity: 0.8, rank: (m, layer) => (m === "down_proj" ? 8 : 4 + layer), random: rng(5) });
    const built = makeAdapter(
      modules.map((m) => (m.module === "v_proj" ? { ...m, alpha: 5 } : m)),
      { useRslora: true },
    );
    // Through the on-disk format first, as the server would load it.
    await writeAdapterDir(join(dir.path, "lori-s"), built);
    const adapter = await readAdapterDir(join(dir.path, "lori-s"));
    const actual = await logProbs(await compile(adapter));
    expect(worst(actual, reference([referenceAdapter(adapter)]))).toBeLessThan(TOLERANCE);
    expect(worst(actual, reference([]))).toBeGreaterThan(0.01);
  });

  it("skipping the q/k rope permutation is caught (the comparison has teeth)", async () => {
    const adapter = makeAdapter(tinyModules({ seed: 14, random: rng(10) }).filter((m) => m.module === "q_proj" || m.module === "k_proj"));
    const expected = reference([referenceAdapter(adapter)]);
    expect(worst(await logProbs(await compile(adapter)), expected)).toBeLessThan(TOLERANCE);
    expect(worst(await logProbs(await compile(adapter, "F32", "gguf")), expected)).toBeGreaterThan(100 * TOLERANCE);
  });

  it("the user scale multiplies the adapter's effect", async () => {
    const adapter = makeAdapter(tinyModules({ seed: 12, random: rng(6) }));
    const actual = await logProbs(await compile(adapter), 0.5);
    expect(worst(actual, reference([{ ...referenceAdapter(adapter), scale: 0.5 }]))).toBeLessThan(TOLERANCE);
  });

  it("a cat merge with a negative weight equals applying both adapters with those weights", async () => {
    const one = makeAdapter(tinyModules({ seed: 1, random: rng(7) }));
    const two = makeAdapter(tinyModules({ seed: 2, random: rng(8), rank: () => 3 }));
    const merged = mergeCat([
      { adapter: one, weight: 0.6 },
      { adapter: two, weight: -0.4 },
    ]);
    const actual = await logProbs(await compile(merged));
    expect(worst(actual, reference([referenceAdapter(one, 0.6), referenceAdapter(two, -0.4)]))).toBeLessThan(TOLERANCE);
  });

  it("F16 tensors stay close to the reference", async () => {
    const adapter = makeAdapter(tinyModules({ seed: 13, random: rng(9) }));
    const actual = await logProbs(await compile(adapter, "F16"));
    const expected = reference([referenceAdapter(adapter)]);
    // ggml's CPU matmul with F16 weights also rounds the activations to F16, so allow a few percent of the
    // adapter's whole effect (measured: ~1.2e-2 absolute).
    const effect = worst(expected, reference([]));
    expect(worst(actual, expected)).toBeLessThan(0.05 * effect);
  });
});
