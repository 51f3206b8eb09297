// Acceptance tests of import / merge / export against real node-llama-cpp and the float64 HF reference:
// PEFT directories written as PEFT writes them go through the CLI commands, get compiled to GGUF LoRAs and are
// evaluated by llama.cpp; nothing in between is trusted.
import { join } from "node:path";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportCommand } from "../../src/cli/commands/export.js";
import { importCommand } from "../../src/cli/commands/import.js";
import { mergeCommand } from "../../src/cli/commands/merge.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { makeAdapter, materializeA } from "../../src/lora/adapter.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { createByteTokenizer } from "../../src/model/byte-tokenizer.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { tinyModelConfig } from "../../src/model/tiny-model.js";
import { writeLlamaGguf } from "../../src/model/write-llama-gguf.js";
import { fixturePath, missingFixtureMessage } from "../support/fixtures.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { logSoftmax, referenceLlamaLogits, type ReferenceLoraAdapter } from "../support/reference-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { rng, tinyModules } from "../lora/helpers.js";
import { asStored, moduleShapesOfGguf, randomPeftTensors, runCli, writePeftDir, type ModuleShape } from "../lora/peft-fixtures.js";

const ACCEPTANCE = 1e-3; // import vs the float64 reference (the bound)
const STACKING = 1e-4; // two stacked adapters vs their cat merge (both in llama.cpp)
const config = tinyModelConfig({});
const weights = createRandomHfLlamaWeights(config, 42);
const sequences: number[][] = [
  [256, ...Buffer.from("Hello, world")],
  Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % config.vocabSize),
];
const measured: Record<string, number> = {};

const worst = (a: Float64Array[], b: Float64Array[]) => Math.max(...a.map((x, i) => maxAbsDifference(x, b[i]!)));

async function ok(command: Parameters<typeof runCli>[0], argv: string[]): Promise<string> {
  const result = await runCli(command, argv);
  if (result.error) throw result.error;
  expect(result.code).toBe(0);
  return result.stdout;
}

/** Log-probs at the last position of each sequence with the given GGUF LoRAs applied together. */
async function logProbs(model: LlamaModel, contexts: LlamaContext[], seqs: number[][], adapters: { filePath: string; scale: number }[]) {
  const context = await model.createContext({
    contextSize: 128,
    ...EXACT_CONTEXT_OPTIONS,
    ...(adapters.length ? { lora: { adapters } } : {}),
  });
  contexts.push(context);
  const sequence = context.getSequence();
  const out: Float64Array[] = [];
  for (const tokens of seqs) out.push(await getLastPositionLogProbs(sequence, tokens as Token[]));
  sequence.dispose();
  return out;
}

describe("import / merge / export on a generated llama model, against node-llama-cpp and the float64 reference", () => {
  const tmp = useTempDir();
  let model: LlamaModel;
  let basePath: string;
  let header: GgufFile;
  let shapes: ModuleShape[];
  const contexts: LlamaContext[] = [];
  const adaptersDir = () => join(tmp.path, "adapters");

  beforeAll(async () => {
    basePath = join(tmp.path, "base.gguf");
    await writeLlamaGguf(basePath, { config, weights, dtype: "f32", tokenizer: createByteTokenizer() });
    header = await readGgufFile(basePath);
    shapes = moduleShapesOfGguf(header);
    model = await (await getTestLlama()).loadModel({ modelPath: basePath });
  });
  afterAll(async () => {
    for (const context of contexts) await context.dispose();
    await model?.dispose();
    if (Object.keys(measured).length) console.log("[adapter-commands-llama] measured max |diff| in log-probs:", measured);
  });

  const reference = (adapters: ReferenceLoraAdapter[]) =>
    sequences.map((tokens) => logSoftmax(referenceLlamaLogits(config, weights, tokens, { adapters }).at(-1)!));

  /** PEFT dir -> `import` -> `export --format gguf` -> path of the GGUF LoRA. */
  async function importAndCompile(name: string, source: string): Promise<string> {
    await ok(importCommand, [source, "--name", name, "--base", basePath, "--adapters-dir", adaptersDir()]);
    const out = join(tmp.path, `${name}.gguf`);
    await ok(exportCommand, [name, "--format", "gguf", "--base", basePath, "--out", out, "--adapters-dir", adaptersDir()]);
    return out;
  }

  for (const variant of [
    { label: "fp32", dtype: "F32" as const, rank: 4, alpha: 8, rslora: false },
    { label: "fp16", dtype: "F16" as const, rank: 4, alpha: 8, rslora: false },
    { label: "rsLoRA", dtype: "F32" as const, rank: 8, alpha: 4, rslora: true },
  ]) {
    it(`a random ${variant.label} PEFT adapter on all 7 projections, imported and compiled, matches the reference within 1e-3`, async () => {
      const tensors = randomPeftTensors(shapes, { rank: variant.rank, seed: 100 + variant.rank + (variant.dtype === "F16" ? 1 : 0) });
      const source = join(tmp.path, `peft-${variant.label}`);
      await writePeftDir(source, { rank: variant.rank, alpha: variant.alpha, useRslora: variant.rslora, dtype: variant.dtype, tensors });
      const gguf = await importAndCompile(`imp-${variant.label}`, source);
      // The reference applies alpha / r; rsLoRA's alpha / sqrt(r) is alpha * sqrt(r) / r.
      const alpha = variant.rslora ? variant.alpha * Math.sqrt(variant.rank) : variant.alpha;
      const expected = reference([{ tensors: asStored(tensors, variant.dtype), alpha }]);
      const actual = await logProbs(model, contexts, sequences, [{ filePath: gguf, scale: 1 }]);
      measured[`import ${variant.label} vs reference`] = worst(actual, expected);
      expect(worst(actual, expected)).toBeLessThan(ACCEPTANCE);
      expect(worst(actual, reference([]))).toBeGreaterThan(0.05); // the adapter really changes the output
    });
  }

  it("two adapters stacked at (0.7, -1.3) equal their cat merge (merge command, scale 1) within 1e-4", async () => {
    await writePeftDir(join(tmp.path, "peft-a"), { rank: 4, alpha: 8, tensors: randomPeftTensors(shapes, { rank: 4, seed: 201 }) });
    await writePeftDir(join(tmp.path, "peft-b"), { rank: 6, alpha: 6, tensors: randomPeftTensors(shapes, { rank: 6, seed: 202 }) });
    const a = await importAndCompile("a", join(tmp.path, "peft-a"));
    const b = await importAndCompile("b", join(tmp.path, "peft-b"));
    await ok(mergeCommand, ["--method", "cat", "--out", "ab", "a:0.7", "b:-1.3", "--adapters-dir", adaptersDir()]);
    const merged = join(tmp.path, "ab.gguf");
    await ok(exportCommand, ["ab", "--format", "gguf", "--base", basePath, "--out", merged, "--adapters-dir", adaptersDir()]);
    expect((await readAdapterDir(join(adaptersDir(), "ab"))).modules.every((m) => m.rank === 10)).toBe(true);
    const stacked = await logProbs(model, contexts, sequences, [
      { filePath: a, scale: 0.7 },
      { filePath: b, scale: -1.3 },
    ]);
    const single = await logProbs(model, contexts, sequences, [{ filePath: merged, scale: 1 }]);
    measured["stacked vs cat (generated)"] = worst(stacked, single);
    expect(worst(stacked, single)).toBeLessThan(STACKING);
    expect(worst(stacked, await logProbs(model, contexts, sequences, []))).toBeGreaterThan(0.05);
  });

  it("two adapters sharing one seeded A merge (cat) at rank r, and still equal the stacked pair", async () => {
    for (const [name, random] of [
      ["s1", rng(301)],
      ["s2", rng(302)],
    ] as const) {
      const source = join(tmp.path, `lori-${name}`);
      await writeAdapterDir(source, makeAdapter(tinyModules({ seed: 777, random, sparsity: 0.5 })));
      await ok(importCommand, [source, "--name", name, "--base", basePath, "--adapters-dir", adaptersDir()]);
    }
    await ok(mergeCommand, ["--method", "cat", "--out", "s12", "s1:0.7", "s2:-1.3", "--adapters-dir", adaptersDir()]);
    const collapsed = await readAdapterDir(join(adaptersDir(), "s12"));
    expect(collapsed.modules.every((m) => m.rank === 4 && m.a.kind === "seeded" && m.a.seed === 777)).toBe(true);
    const paths: string[] = [];
    for (const name of ["s1", "s2", "s12"]) {
      paths.push(join(tmp.path, `${name}.gguf`));
      await ok(exportCommand, [name, "--format", "gguf", "--base", basePath, "--out", paths.at(-1)!, "--adapters-dir", adaptersDir()]);
    }
    const stacked = await logProbs(model, contexts, sequences, [
      { filePath: paths[0]!, scale: 0.7 },
      { filePath: paths[1]!, scale: -1.3 },
    ]);
    const single = await logProbs(model, contexts, sequences, [{ filePath: paths[2]!, scale: 1 }]);
    measured["stacked vs collapsed shared-A cat"] = worst(stacked, single);
    expect(worst(stacked, single)).toBeLessThan(STACKING);
  });

  it("a linear merge matches PEFT's linear formula (cross terms included) computed independently, and differs from cat", async () => {
    const ta = randomPeftTensors(shapes, { rank: 4, seed: 401 });
    const tc = randomPeftTensors(shapes, { rank: 4, seed: 402 });
    await writePeftDir(join(tmp.path, "peft-la"), { rank: 4, alpha: 8, tensors: ta });
    await writePeftDir(join(tmp.path, "peft-lc"), { rank: 4, alpha: 4, tensors: tc });
    await ok(importCommand, [join(tmp.path, "peft-la"), "--name", "la", "--base", basePath, "--adapters-dir", adaptersDir()]);
    await ok(importCommand, [join(tmp.path, "peft-lc"), "--name", "lc", "--base", basePath, "--adapters-dir", adaptersDir()]);
    const result = await runCli(mergeCommand, ["--method", "linear", "--out", "lin", "la:0.5", "lc:0.8", "--adapters-dir", adaptersDir()]);
    expect(result.code).toBe(0);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/cross terms/);
    const out = join(tmp.path, "lin.gguf");
    await ok(exportCommand, ["lin", "--format", "gguf", "--base", basePath, "--out", out, "--adapters-dir", adaptersDir()]);
    // PEFT add_weighted_adapter 'linear': A = sum sqrt(c_i) A_i, B = sum sqrt(c_i) B_i, c_i = w_i alpha_i / r.
    const roots = [Math.sqrt((0.5 * 8) / 4), Math.sqrt((0.8 * 4) / 4)];
    const combined = new Map<string, Float32Array>();
    for (const name of ta.keys()) {
      const x = ta.get(name)!;
      const y = tc.get(name)!;
      combined.set(
        name,
        Float32Array.from(x, (v, i) => roots[0]! * v + roots[1]! * y[i]!),
      );
    }
    const linearReference = reference([{ tensors: combined, alpha: 4 }]); // alpha = r: scale 1
    const actual = await logProbs(model, contexts, sequences, [{ filePath: out, scale: 1 }]);
    measured["linear merge vs PEFT linear reference"] = worst(actual, linearReference);
    expect(worst(actual, linearReference)).toBeLessThan(ACCEPTANCE);
    const exactSum = reference([
      { tensors: ta, alpha: 8, scale: 0.5 },
      { tensors: tc, alpha: 4, scale: 0.8 },
    ]);
    measured["linear vs exact weighted sum (cross terms)"] = worst(actual, exactSum);
    expect(worst(actual, exactSum)).toBeGreaterThan(100 * ACCEPTANCE);
  });

  it("the merged adapter's A is what cat promises: [c_1 A_1; c_2 A_2]", async () => {
    const merged = await readAdapterDir(join(adaptersDir(), "ab"));
    const a = await readAdapterDir(join(adaptersDir(), "a"));
    const m = merged.modules[0]!;
    const a0 = materializeA(a.modules[0]!);
    const c = 0.7 * (8 / 4);
    expect(
      maxAbsDifference(
        materializeA(m).subarray(0, a0.length),
        Float32Array.from(a0, (v) => c * v),
      ),
    ).toBeLessThan(1e-6);
    expect(peftPrefix(m.layer, m.module)).toBe(peftPrefix(0, "q_proj"));
  });
});

const STORIES = "models/stories260K.gguf";
const storiesPath = fixturePath(STORIES);
if (!storiesPath) console.warn(missingFixtureMessage(STORIES));

describe.skipIf(!storiesPath)("stacking vs cat merge on stories260K", () => {
  const tmp = useTempDir();
  let model: LlamaModel;
  const contexts: LlamaContext[] = [];
  afterAll(async () => {
    for (const context of contexts) await context.dispose();
    await model?.dispose();
  });

  it("two imported adapters stacked at (0.7, -1.3) equal their cat merge within 1e-4", async () => {
    const base = storiesPath!;
    const shapes = moduleShapesOfGguf(await readGgufFile(base));
    expect(shapes).toHaveLength(35);
    const adaptersDir = join(tmp.path, "adapters");
    const paths: string[] = [];
    for (const [name, rank, seed] of [
      ["a", 4, 501],
      ["b", 8, 502],
    ] as const) {
      await writePeftDir(join(tmp.path, `peft-${name}`), {
        rank,
        alpha: 2 * rank,
        tensors: randomPeftTensors(shapes, { rank, seed, bScale: 0.05 }),
      });
      await ok(importCommand, [join(tmp.path, `peft-${name}`), "--name", name, "--base", base, "--adapters-dir", adaptersDir]);
    }
    await ok(mergeCommand, ["--method", "cat", "--out", "ab", "a:0.7", "b:-1.3", "--adapters-dir", adaptersDir]);
    for (const name of ["a", "b", "ab"]) {
      paths.push(join(tmp.path, `${name}.gguf`));
      await ok(exportCommand, [name, "--format", "gguf", "--base", base, "--out", paths.at(-1)!, "--adapters-dir", adaptersDir]);
    }
    model = await (await getTestLlama()).loadModel({ modelPath: base });
    const seqs = [[1, 50, 100, 200, 300, 400], Array.from({ length: 16 }, (_, i) => 1 + ((i * 29 + 7) % 500))];
    const plain = await logProbs(model, contexts, seqs, []);
    const stacked = await logProbs(model, contexts, seqs, [
      { filePath: paths[0]!, scale: 0.7 },
      { filePath: paths[1]!, scale: -1.3 },
    ]);
    const single = await logProbs(model, contexts, seqs, [{ filePath: paths[2]!, scale: 1 }]);
    measured["stacked vs cat (stories260K)"] = worst(stacked, single);
    console.log("[adapter-commands-llama] stories260K stacked vs cat:", worst(stacked, single), "effect:", worst(stacked, plain));
    expect(worst(stacked, single)).toBeLessThan(STACKING);
    expect(worst(stacked, plain)).toBeGreaterThan(0.01);
  });
});
