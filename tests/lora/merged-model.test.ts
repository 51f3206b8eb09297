// Merged models (base + adapter folded into the weights): the folded tensors against a float64 reference of
// W + s * B A with llama's q/k row permutation written out independently, and node-llama-cpp serving the
// merged GGUF against node-llama-cpp serving the base with the compiled GGUF LoRA.
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/command.js";
import { exportCommand } from "../../src/cli/commands/export.js";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { makeAdapter, materializeA, type Adapter } from "../../src/lora/adapter.js";
import { readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { baseFingerprintOfGguf } from "../../src/lora/base-fingerprint.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { mergeCat } from "../../src/lora/merge.js";
import { MERGED_FROM_KEY, writeMergedModel } from "../../src/lora/merged-model.js";
import { GGUF_TENSOR_STEM } from "../../src/lora/target-modules.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import type { WeightDtype } from "../../src/model/weight-dtype.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { rng, tinyModules } from "./helpers.js";
import { runCli } from "./peft-fixtures.js";

// Both paths are float32 llama.cpp with EXACT_CONTEXT_OPTIONS; they differ only in where s * B A is added
// (to the weights once, or to the activations per token), which costs ~1e-6 in float32.
const F32_TOLERANCE = 1e-4;
const sequences: number[][] = [[256, ...Buffer.from("Hello, world")], Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % 260)];

const tmp = useTempDir();
const paths: Record<WeightDtype, string> = { f32: "", f16: "", q8_0: "" };
const headers = {} as Record<WeightDtype, GgufFile>;
let counter = 0;
const loaded: LlamaModel[] = [];

beforeAll(async () => {
  for (const dtype of ["f32", "f16", "q8_0"] as const) {
    paths[dtype] = join(tmp.path, `base-${dtype}.gguf`);
    await createTinyModel({ out: paths[dtype], dtype, seed: 7 });
    headers[dtype] = await readGgufFile(paths[dtype]);
  }
});
afterAll(async () => {
  for (const model of loaded) await model.dispose();
});

/** A LoRI-S adapter on every projection of both layers (seeded A, sparse B), fingerprinted for `header`. */
function tinyAdapter(seed: number, header: GgufFile, options: { rsLora?: boolean } = {}): Adapter {
  return makeAdapter(tinyModules({ seed, sparsity: 0.5, random: rng(seed + 100), rank: (_module, layer) => 4 + layer }), {
    baseFingerprint: baseFingerprintOfGguf(header),
    useRslora: options.rsLora ?? false,
  });
}

function fresh(name: string): string {
  return join(tmp.path, `${name}-${counter++}.gguf`);
}

/** W + s * P(B) A in float64, P = llama's rope row permutation (GGUF row h*d + 2j + i <- HF row h*d + i*d/2 + j). */
function referenceMerged(w: Float32Array, adapter: Adapter, layer: number, stem: string, nHead: number | null): Float64Array {
  const m = adapter.modules.find((x) => x.layer === layer && GGUF_TENSOR_STEM[x.module] === stem)!;
  const scale = m.alpha / (adapter.config.use_rslora ? Math.sqrt(m.rank) : m.rank);
  const a = materializeA(m);
  const hfRowOf = (row: number): number => {
    if (nHead === null) return row;
    const d = m.outFeatures / nHead;
    const head = Math.floor(row / d);
    const within = row % d;
    return head * d + (within % 2) * (d / 2) + Math.floor(within / 2);
  };
  const out = Float64Array.from(w);
  for (let o = 0; o < m.outFeatures; o++) {
    const hf = hfRowOf(o);
    for (let i = 0; i < m.inFeatures; i++) {
      let sum = 0;
      for (let r = 0; r < m.rank; r++) sum += m.b[hf * m.rank + r]! * a[r * m.inFeatures + i]!;
      out[o * m.inFeatures + i] = out[o * m.inFeatures + i]! + scale * sum;
    }
  }
  return out;
}

describe("merged model tensors", () => {
  for (const dtype of ["f32", "f16"] as const) {
    it(`${dtype}: every adapted weight is W + s B A (q/k rows permuted), every other tensor is copied byte for byte`, async () => {
      const header = headers[dtype];
      const adapter = tinyAdapter(3, header, { rsLora: dtype === "f16" });
      const out = fresh(`merged-${dtype}`);
      const summary = await writeMergedModel(adapter, paths[dtype], header, out, { name: "tiny" });
      expect(summary.mergedTensors).toBe(14);
      const merged = await readGgufFile(out);
      expect(merged.metadata.get(MERGED_FROM_KEY)?.value).toBe("tiny");
      expect(merged.tensors.map((t) => [t.name, t.type, t.shape.join()])).toEqual(
        header.tensors.map((t) => [t.name, t.type, t.shape.join()]),
      );
      const baseBytes = await readFile(paths[dtype]);
      const mergedBytes = await readFile(out);
      let compared = 0;
      for (const [index, info] of merged.tensors.entries()) {
        const baseInfo = header.tensors[index]!;
        const match = /^blk\.(\d+)\.(\w+)\.weight$/.exec(info.name);
        const stem = match?.[2];
        const adapted = stem !== undefined && Object.values(GGUF_TENSOR_STEM).includes(stem as never);
        if (!adapted) {
          const a = baseBytes.subarray(baseInfo.offset, baseInfo.offset + baseInfo.byteLength);
          expect(mergedBytes.subarray(info.offset, info.offset + info.byteLength).equals(a), info.name).toBe(true);
          continue;
        }
        const nHead = stem === "attn_q" ? 4 : stem === "attn_k" ? 2 : null;
        const expected = referenceMerged(await readTensorAsFloat32(paths[dtype], baseInfo), adapter, Number(match![1]), stem!, nHead);
        const actual = await readTensorAsFloat32(out, info);
        for (let i = 0; i < expected.length; i++) {
          // One rounding of the float64 result to the weight's type: half an ulp (2^-24 float32, 2^-11 F16
          // relative; 2^-25 absolute covers F16 subnormals), doubled for slack.
          const bound = dtype === "f32" ? 2 ** -23 * Math.abs(expected[i]!) + 1e-12 : 2 ** -10 * Math.abs(expected[i]!) + 2 ** -24;
          if (Math.abs(actual[i]! - expected[i]!) > bound) {
            throw new Error(`${info.name}[${i}]: ${actual[i]} vs ${expected[i]} (bound ${bound})`);
          }
        }
        // The adapter moved the weights by much more than the rounding: the comparison has teeth.
        const base = await readTensorAsFloat32(paths[dtype], baseInfo);
        expect(maxAbsDifference(base, actual)).toBeGreaterThan(1e-2);
        compared++;
      }
      expect(compared).toBe(14);
    });
  }

  it("an aborted write stops and leaves nothing behind", async () => {
    const header = headers.f32;
    const controller = new AbortController();
    controller.abort();
    const out = join(tmp.path, "aborted.gguf");
    await expect(writeMergedModel(tinyAdapter(4, header), paths.f32, header, out, { signal: controller.signal })).rejects.toThrow();
    expect((await readdir(tmp.path)).filter((n) => n.includes("aborted.gguf"))).toEqual([]);
  });

  it("a quantized base is refused before anything is written", async () => {
    const header = headers.q8_0;
    const adapter = tinyAdapter(4, header);
    await expect(writeMergedModel(adapter, paths.q8_0, header, join(tmp.path, "q8.gguf"))).rejects.toThrow(
      /blk\.0\.attn_q\.weight is Q8_0: merged models need F32 or F16 weights/,
    );
    expect((await readdir(tmp.path)).filter((n) => n.includes("q8.gguf"))).toEqual([]);
  });
});

describe("merged GGUF in node-llama-cpp vs base + compiled LoRA", () => {
  async function load(modelPath: string): Promise<LlamaModel> {
    const model = await (await getTestLlama()).loadModel({ modelPath });
    loaded.push(model);
    return model;
  }

  async function logProbs(model: LlamaModel, loraPath?: string): Promise<Float64Array[]> {
    const context = await model.createContext({
      contextSize: 128,
      ...EXACT_CONTEXT_OPTIONS,
      ...(loraPath ? { lora: { adapters: [{ filePath: loraPath, scale: 1 }] } } : {}),
    });
    try {
      const sequence = context.getSequence();
      const out: Float64Array[] = [];
      for (const tokens of sequences) out.push(await getLastPositionLogProbs(sequence, tokens as Token[]));
      return out;
    } finally {
      await context.dispose();
    }
  }

  const worst = (a: Float64Array[], b: Float64Array[]) => Math.max(...a.map((x, i) => maxAbsDifference(x, b[i]!)));

  /** [merged vs LoRA, LoRA vs base] for `adapter` on `basePath`. */
  async function compare(basePath: string, header: GgufFile, adapter: Adapter): Promise<[number, number]> {
    const lora = fresh("lora");
    await compileGgufLora(adapter, header, lora);
    const merged = fresh("merged");
    await writeMergedModel(adapter, basePath, header, merged);
    const base = await load(basePath);
    const withLora = await logProbs(base, lora);
    const plain = await logProbs(base);
    const folded = await logProbs(await load(merged));
    return [worst(folded, withLora), worst(withLora, plain)];
  }

  it("F32 tiny model: a cat-merged set of two adapters (one negative weight) reproduces the LoRA path within 1e-4", async () => {
    const header = headers.f32;
    const set = mergeCat([
      { adapter: tinyAdapter(5, header), weight: 0.7 },
      { adapter: tinyAdapter(6, header, { rsLora: true }), weight: -0.4 },
    ]);
    const [difference, effect] = await compare(paths.f32, header, set);
    expect(difference).toBeLessThan(F32_TOLERANCE);
    expect(effect).toBeGreaterThan(100 * F32_TOLERANCE);
  });

  it("F16 tiny model: within the F16 rounding of the merged weights", async () => {
    const header = headers.f16;
    const [difference, effect] = await compare(paths.f16, header, tinyAdapter(8, header));
    // The merged path rounds W + s B A to F16 (half an ulp, 2^-11 relative per weight); the LoRA path rounds
    // only W and keeps s B A in float32. Measured 3.7e-3 in log-probs on this model (adapter effect 3.8,
    // F32 paths agree to 1.5e-6); 2e-2 is the stated F16 tolerance, ~5x the measurement.
    expect(difference).toBeLessThan(2e-2);
    expect(effect).toBeGreaterThan(100 * 2e-2);
  });

  it("the demo model with the demo 'math' adapter reproduces the LoRA path within 1e-4", async () => {
    const basePath = resolve("models/lori-demo.gguf");
    const header = await readGgufFile(basePath);
    const adapter = await readAdapterDir(resolve("adapters/math"));
    const [difference, effect] = await compare(basePath, header, adapter);
    expect(difference).toBeLessThan(F32_TOLERANCE);
    expect(effect).toBeGreaterThan(100 * F32_TOLERANCE);
  });
});

describe("lori-server export --format merged-gguf", () => {
  it("writes a merged model that loads, and refuses a wrong base, a quantized base and --dtype with one line, writing nothing", async () => {
    const adaptersDir = join(tmp.path, "store");
    await writeAdapterDir(join(adaptersDir, "tiny"), tinyAdapter(9, headers.f32));
    const out = join(tmp.path, "cli", "merged.gguf");
    await mkdir(join(tmp.path, "cli"), { recursive: true });
    const run = (args: string[]) => runCli(exportCommand, ["tiny", "--adapters-dir", adaptersDir, ...args]);

    const good = await run(["--format", "merged-gguf", "--base", paths.f32, "--out", out]);
    expect(good.error).toBeNull();
    expect(good.stdout).toMatch(/exported tiny as a merged GGUF model \(14 tensors merged/);
    expect((await readGgufFile(out)).tensors.length).toBe(headers.f32.tensors.length);

    // The fingerprint is the architecture plus tensor names and shapes: a base of another shape is a wrong base.
    const otherBase = join(tmp.path, "other.gguf");
    await createTinyModel({ out: otherBase, embd: 32, heads: 2, kvHeads: 1, ff: 64 });
    const refusals: Array<[string[], RegExp]> = [
      [["--format", "merged-gguf", "--base", otherBase, "--out", join(tmp.path, "cli", "a.gguf")], /was made for another base/],
      [
        ["--format", "merged-gguf", "--base", paths.q8_0, "--out", join(tmp.path, "cli", "b.gguf")],
        /is Q8_0: merged models need F32 or F16/,
      ],
      [["--format", "merged-gguf", "--base", paths.f32, "--dtype", "f16", "--out", join(tmp.path, "cli", "c.gguf")], /--dtype applies/],
      [["--format", "merged-gguf", "--out", join(tmp.path, "cli", "d.gguf")], /--base MODEL.gguf is required for --format merged-gguf/],
      [["--format", "merged-gguf", "--base", paths.f32, "--out", out], /already exists/],
    ];
    for (const [args, message] of refusals) {
      const result = await run(args);
      expect(result.error).toBeInstanceOf(CliError);
      expect(result.error!.message).toMatch(message);
      expect(result.error!.message).not.toContain("\n");
    }
    // Only the one good export (no temp files left behind by the refusals).
    expect(await readdir(join(tmp.path, "cli"))).toEqual(["merged.gguf"]);
  });
});
