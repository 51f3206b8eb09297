import { join } from "node:path";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { baseFingerprintOfGguf } from "../../src/lora/base-fingerprint.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import type { Adapter } from "../../src/lora/adapter.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { mergeCat } from "../../src/lora/merge.js";
import { importAdapterDir } from "../../src/lora/peft-import.js";
import { type ArchModelConfig, defaultArchConfig } from "../../src/model/arch-config.js";
import { createByteTokenizer } from "../../src/model/byte-tokenizer.js";
import { createRandomHfArchWeights } from "../../src/model/hf-arch-weights.js";
import { ggufNameForHfArchTensor, writeArchGguf } from "../../src/model/write-arch-gguf.js";
import { randomPeftTensors, writePeftDir } from "../lora/peft-fixtures.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { type ReferenceLoraAdapter, referenceArchLogits } from "../support/reference-arch.js";
import { logSoftmax } from "../support/reference-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { adaptableShapesOfGguf } from "./helpers.js";

// For each family: a random HF-layout model written to GGUF by our writer, and two PEFT adapters imported
// by our importer, against the float64 reference of tests/support/reference-arch.ts (written from the HF
// modelling equations). node-llama-cpp runs with EXACT_CONTEXT_OPTIONS (F32 KV cache, no flash attention).
//
// Bounds on the max |log-probability difference| (measured, seed 42: qwen2/qwen3/phi3 <= 1.6e-6 everywhere;
// gemma2 8.6e-4 base, 1.1e-3 with adapters; gemma3 7.7e-4 / 8.7e-4):
// - 1e-3 against the exact HF equations, except Gemma: 2e-3. ggml's CPU GELU is a lookup table on the input
//   rounded to float16, returning float16 (GGML_GELU_FP16 in ggml-cpu/vec.h), i.e. ~5e-4 relative error per
//   activation, which is all of Gemma's difference:
// - 2e-4 for every family against the same reference with that one approximation modelled (ggmlFp16Gelu):
//   the table is a step function, so float32 noise in an input (the adapters' extra matmuls) now and then
//   lands it on the neighbouring float16 (measured: Gemma ~1.2e-6 base, 4.5e-5 / 6.0e-5 with adapters; the
//   others as above, this reference being the exact one for them).
const EXACT_HF_BOUND = 1e-3;
const GEMMA_EXACT_HF_BOUND = 2e-3;
const AS_COMPUTED_BOUND = 2e-4;
// Q8_0 bases (`model create --dtype q8_0`), against the reference on the weights the file holds:
// - 1e-1 with exact activations. ggml converts a matmul's input to the weight's vec_dot_type, Q8_0 here, so
//   activations are rounded to 8 bits too (measured <= 4.6e-2; the weights' own quantization moves the
//   log-probs by 2.3e-2 to 5.4e-2, so this bound only says "as close as the quantization allows").
// - AS_COMPUTED_BOUND with that activation rounding modelled (ggmlActivationType; measured <= 1.3e-6).
const Q8_0_BOUND = 1e-1;
/** An ablated reference (one feature switched off) must be this far off, or the comparison has no teeth. */
const TEETH = 1e-2;

const shape = { nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 96, vocabSize: 260 };
const sequences: number[][] = [
  [256],
  [256, ...Buffer.from("Hello, world")],
  [256, 258, ...Buffer.from("user\nWhat is 2+2?"), 259, 10],
  // Longer than the Gemma sliding window (8), so the local layers really drop tokens.
  Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % shape.vocabSize),
];

type Weights = Map<string, Float32Array>;
interface Ablation {
  readonly what: string;
  readonly config?: Partial<ArchModelConfig>;
  readonly weights?: (w: Weights) => Weights;
}
interface Case {
  readonly config: ArchModelConfig;
  /** Features of the family, each switched off in the reference: llama.cpp must disagree with every one. */
  readonly ablations: readonly Ablation[];
}

const withoutBiases = (w: Weights) => new Map([...w].filter(([name]) => !name.endsWith(".bias")));
const swapGateUp = (w: Weights) =>
  new Map(
    [...w].map(([name, v]) => {
      if (!name.endsWith("gate_up_proj.weight")) return [name, v];
      const half = v.length / 2;
      return [name, Float32Array.from([...v.subarray(half), ...v.subarray(0, half)])];
    }),
  );

const cases: Record<string, Case> = {
  qwen2: { config: defaultArchConfig("qwen2", shape), ablations: [{ what: "q/k/v biases", weights: withoutBiases }] },
  qwen3: {
    config: defaultArchConfig("qwen3", { ...shape, headDim: 32 }),
    ablations: [{ what: "q/k norms", config: { architecture: "qwen2" } }],
  },
  gemma2: {
    // Soft caps small enough to bite at tiny scale (HF's 50 / 30 would be near-identity here).
    config: { ...defaultArchConfig("gemma2", shape), attnSoftcap: 2, finalSoftcap: 3 },
    ablations: [
      { what: "attention soft-capping", config: { attnSoftcap: null } },
      { what: "final soft-capping", config: { finalSoftcap: null } },
      { what: "sliding window", config: { slidingWindow: null } },
    ],
  },
  gemma3: {
    config: { ...defaultArchConfig("gemma3", { ...shape, headDim: 32 }), finalSoftcap: 4 },
    ablations: [
      { what: "sliding window", config: { slidingWindow: null } },
      { what: "local rope base", config: { ropeThetaSwa: null } },
      { what: "q/k norms", config: { architecture: "gemma2", slidingWindowPattern: 2 } },
    ],
  },
  phi3: { config: defaultArchConfig("phi3", shape), ablations: [{ what: "gate half first", weights: swapGateUp }] },
};

describe.each(Object.entries(cases))("%s: node-llama-cpp vs the float64 HF reference", (arch, { config, ablations }) => {
  const gemma = arch.startsWith("gemma");
  const exactBound = gemma ? GEMMA_EXACT_HF_BOUND : EXACT_HF_BOUND;
  const dir = useTempDir();
  const weights = createRandomHfArchWeights(config, 42);
  let model: LlamaModel;
  let header: GgufFile;
  let quantizedPath: string;
  const contexts: LlamaContext[] = [];
  let counter = 0;
  const peft: Array<{ adapter: Adapter; reference: ReferenceLoraAdapter }> = [];

  beforeAll(async () => {
    const modelPath = join(dir.path, `${arch}.gguf`);
    await writeArchGguf(modelPath, { config, weights, dtype: "f32", tokenizer: createByteTokenizer() });
    header = await readGgufFile(modelPath);
    model = await (await getTestLlama()).loadModel({ modelPath });
    quantizedPath = join(dir.path, `${arch}-q8_0.gguf`);
    await writeArchGguf(quantizedPath, { config, weights, dtype: "q8_0", tokenizer: createByteTokenizer() });
    for (const [i, rank, alpha] of [
      [0, 4, 8],
      [1, 3, 6],
    ] as const) {
      const tensors = randomPeftTensors(adaptableShapesOfGguf(header), { rank, seed: 100 + i, bScale: 0.3 });
      const source = join(dir.path, `peft-${i}`);
      await writePeftDir(source, { rank, alpha, tensors });
      const { adapter } = await importAdapterDir(source, header);
      peft.push({ adapter, reference: { tensors, alpha } });
    }
  });
  afterAll(async () => {
    for (const context of contexts) await context.dispose();
    await model?.dispose();
  });

  async function logProbs(loras: Array<{ adapter: Adapter; scale: number }> = [], on = model): Promise<Float64Array[]> {
    const adapters = [];
    for (const { adapter, scale } of loras) {
      // Distinct paths: node-llama-cpp caches adapters by path for the model's lifetime.
      const filePath = join(dir.path, `lora-${counter++}.gguf`);
      await compileGgufLora(adapter, header, filePath);
      adapters.push({ filePath, scale });
    }
    const context = await on.createContext({
      contextSize: 128,
      ...EXACT_CONTEXT_OPTIONS,
      ...(adapters.length > 0 ? { lora: { adapters } } : {}),
    });
    contexts.push(context);
    const sequence = context.getSequence();
    const out: Float64Array[] = [];
    for (const tokens of sequences) out.push(await getLastPositionLogProbs(sequence, tokens as Token[]));
    sequence.dispose();
    return out;
  }

  const reference = (
    adapters: ReferenceLoraAdapter[] = [],
    c: ArchModelConfig = config,
    w: Weights = weights,
    ggmlFp16Gelu = false,
    ggmlActivationType?: (name: string) => "Q8_0" | "F16" | undefined,
  ) => sequences.map((tokens) => logSoftmax(referenceArchLogits(c, w, tokens, { adapters, ggmlFp16Gelu, ggmlActivationType }).at(-1)!));
  /** Checks `actual` against the exact HF reference and the as-computed one; returns both errors. */
  const expectMatch = (actual: Float64Array[], adapters: ReferenceLoraAdapter[], what: string): string => {
    const exact = worst(actual, reference(adapters));
    const asComputed = worst(actual, reference(adapters, config, weights, gemma));
    expect(exact, `${what} vs the exact HF equations`).toBeLessThan(exactBound);
    expect(asComputed, `${what} vs the HF equations with ggml's float16 GELU`).toBeLessThan(AS_COMPUTED_BOUND);
    return `${exact.toExponential(2)} (as computed ${asComputed.toExponential(2)})`;
  };
  const worst = (a: Float64Array[], b: Float64Array[]) => Math.max(...a.map((x, i) => maxAbsDifference(x, b[i]!)));

  it("agrees on the base model, and disagrees with the reference minus each family feature", async () => {
    const actual = await logProbs();
    console.log(`${arch} base: max |log-prob difference| ${expectMatch(actual, [], "base")}`);
    for (const ablation of ablations) {
      const ablated = reference([], { ...config, ...ablation.config }, ablation.weights?.(weights) ?? weights);
      expect(worst(actual, ablated), `without ${ablation.what}`).toBeGreaterThan(TEETH);
    }
  });

  it("agrees with two imported PEFT adapters stacked at (0.7, -1.3), and with their cat merge", async () => {
    const [one, two] = peft as [(typeof peft)[0], (typeof peft)[0]];
    const both = [
      { ...one.reference, scale: 0.7 },
      { ...two.reference, scale: -1.3 },
    ];
    const stacked = await logProbs([
      { adapter: one.adapter, scale: 0.7 },
      { adapter: two.adapter, scale: -1.3 },
    ]);
    const merged = await logProbs([
      {
        adapter: mergeCat([
          { adapter: one.adapter, weight: 0.7 },
          { adapter: two.adapter, weight: -1.3 },
        ]),
        scale: 1,
      },
    ]);
    console.log(`${arch} adapters: stacked ${expectMatch(stacked, both, "stacked")}, cat-merged ${expectMatch(merged, both, "merged")}`);
    // The adapters really move the output.
    expect(worst(reference(both), reference())).toBeGreaterThan(0.05);
  });

  it("a Q8_0 base: same fingerprint, so the same compiled adapters apply; matches the reference on its weights", async () => {
    const quantizedHeader = await readGgufFile(quantizedPath);
    expect(quantizedHeader.tensors.filter((t) => t.type === "Q8_0").length).toBeGreaterThan(0);
    expect(baseFingerprintOfGguf(quantizedHeader).sha256).toBe(baseFingerprintOfGguf(header).sha256);
    // The reference runs on the weights the file holds, decoded by the GGUF reader (not the quantizer).
    const stored = new Map(weights);
    const storedTypes = new Map<string, "Q8_0" | "F16">();
    for (const t of quantizedHeader.tensors) {
      if (t.shape.length !== 2) continue;
      const hfName = [...weights.keys()].find((n) => ggufNameForHfArchTensor(config.architecture, n) === t.name)!;
      stored.set(hfName, await readTensorAsFloat32(quantizedPath, t));
      storedTypes.set(hfName, t.type as "Q8_0" | "F16");
    }
    const asComputed = (adapters: ReferenceLoraAdapter[]) => reference(adapters, config, stored, gemma, (name) => storedTypes.get(name));
    const quantized = await (await getTestLlama()).loadModel({ modelPath: quantizedPath });
    try {
      const [one, two] = peft as [(typeof peft)[0], (typeof peft)[0]];
      const both = [
        { ...one.reference, scale: 0.7 },
        { ...two.reference, scale: -1.3 },
      ];
      const actualBase = await logProbs([], quantized);
      const actualStacked = await logProbs(
        [
          { adapter: one.adapter, scale: 0.7 },
          { adapter: two.adapter, scale: -1.3 },
        ],
        quantized,
      );
      const errors = {
        base: worst(actualBase, reference([], config, stored)),
        stacked: worst(actualStacked, reference(both, config, stored)),
        baseAsComputed: worst(actualBase, asComputed([])),
        stackedAsComputed: worst(actualStacked, asComputed(both)),
        quantization: worst(reference([], config, stored), reference()),
      };
      console.log(
        `${arch} Q8_0: ${Object.entries(errors)
          .map(([k, v]) => `${k} ${v.toExponential(2)}`)
          .join(", ")}`,
      );
      expect(errors.base).toBeLessThan(Q8_0_BOUND);
      expect(errors.stacked).toBeLessThan(Q8_0_BOUND);
      expect(errors.baseAsComputed).toBeLessThan(AS_COMPUTED_BOUND);
      expect(errors.stackedAsComputed).toBeLessThan(AS_COMPUTED_BOUND);
    } finally {
      await quantized.dispose();
    }
  });
});
