// DoRA adapters in the adapter model: stored with PEFT's names (use_dora + lora_magnitude_vector), refused as a
// GGUF LoRA and in adapter merges with one message that says to export a merged model, and folded into a merged
// model as W' = m * (W + s B A) / ||W + s B A|| per output row (checked against a float64 reference with llama's
// q/k row permutation written out independently).
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { exportCommand } from "../../src/cli/commands/export.js";
import { importCommand } from "../../src/cli/commands/import.js";
import { makeAdapter, materializeA, type Adapter, type LoraModule } from "../../src/lora/adapter.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { CONFIG_FILE, readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { peftConfigOf, peftTensorsOf } from "../../src/lora/export-peft.js";
import { planGgufLora } from "../../src/lora/gguf-lora.js";
import { recoverLoriStructure } from "../../src/lora/peft-import.js";
import { mergeCat } from "../../src/lora/merge.js";
import { writeMergedModel } from "../../src/lora/merged-model.js";
import { SafetensorsFile } from "../../src/lora/safetensors.js";
import { GGUF_TENSOR_STEM } from "../../src/lora/target-modules.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";
import { rng, tinyModules } from "./helpers.js";
import { runCli, writePeftDir } from "./peft-fixtures.js";

/** Dense-A modules of the tiny model with a magnitude per output row, 0.5..1.5 (so W' != W anywhere). */
function doraModules(seed: number): LoraModule[] {
  const random = rng(seed);
  return tinyModules({ random }).map((m) => ({ ...m, magnitude: new Float32Array(m.outFeatures).map(() => 0.5 + random()) }));
}

const tmp = useTempDir();
let basePath = "";
let header: GgufFile;

beforeAll(async () => {
  basePath = join(tmp.path, "base.gguf");
  await createTinyModel({ out: basePath, seed: 5 });
  header = await readGgufFile(basePath);
});

describe("DoRA in the adapter store", () => {
  it("round-trips use_dora and lora_magnitude_vector [out] bit for bit", async () => {
    const adapter = makeAdapter(doraModules(1));
    expect(adapter.config.use_dora).toBe(true);
    expect(adapter.config.lori?.variant).toBe("dora");
    const dir = join(tmp.path, "dora-store");
    await writeAdapterDir(dir, adapter);
    const file = await SafetensorsFile.open(join(dir, "adapter_model.safetensors"));
    try {
      expect(file.info("base_model.model.model.layers.1.self_attn.k_proj.lora_magnitude_vector").shape).toEqual([32]);
    } finally {
      await file.close();
    }
    const read = await readAdapterDir(dir);
    expect(read.config.use_dora).toBe(true);
    for (const [i, m] of read.modules.entries()) expect(m.magnitude).toEqual(adapter.modules[i]!.magnitude);
  });

  it("refuses magnitudes without use_dora, use_dora without magnitudes, and half-DoRA module sets", async () => {
    const dir = join(tmp.path, "dora-flag");
    await writeAdapterDir(dir, makeAdapter(doraModules(2)));
    const config = JSON.parse(await readFile(join(dir, CONFIG_FILE), "utf8"));
    await writeFile(join(dir, CONFIG_FILE), JSON.stringify({ ...config, use_dora: false }));
    await expect(readAdapterDir(dir)).rejects.toThrow(/lora_magnitude_vector \(DoRA\) but the config's use_dora is false/);

    const plain = join(tmp.path, "plain-flag");
    await writeAdapterDir(plain, makeAdapter(tinyModules()));
    const plainConfig = JSON.parse(await readFile(join(plain, CONFIG_FILE), "utf8"));
    await writeFile(join(plain, CONFIG_FILE), JSON.stringify({ ...plainConfig, use_dora: true }));
    await expect(readAdapterDir(plain)).rejects.toThrow(/no lora_magnitude_vector but the config says use_dora: true/);

    const mixed = doraModules(3).map((m, i) => (i === 0 ? { ...m, magnitude: undefined } : m));
    expect(() => makeAdapter(mixed)).toThrow(/13 of 14 modules have a DoRA magnitude vector/);
    expect(() => makeAdapter([{ ...doraModules(3)[0]!, magnitude: new Float32Array(3) }])).toThrow(/magnitude vector has 3 values/);
  });

  it("exports to PEFT with use_dora: true and PEFT's tensor name", () => {
    const adapter = makeAdapter(doraModules(4));
    expect(peftConfigOf(adapter).use_dora).toBe(true);
    const names = peftTensorsOf(adapter).map((t) => t.name);
    expect(names).toContain("base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector");
  });
});

describe("DoRA is not a LoRA", () => {
  it("compiling it to a GGUF LoRA is refused with the merged-model command to use instead", () => {
    const adapter = makeAdapter(doraModules(5));
    let error: unknown;
    try {
      planGgufLora(adapter, header, { name: "style" });
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).toBe("ADAPTER_UNSUPPORTED");
    expect((error as Error).message).toBe(
      "'style' is a DoRA adapter: it cannot be served or combined as a LoRA (DoRA rescales every output row of the weight); " +
        "export it as a merged model: lori-server export style --format merged-gguf --base MODEL.gguf --out MERGED.gguf",
    );
  });

  it("merging it with other adapters is refused the same way", () => {
    const dora = makeAdapter(doraModules(6));
    const plain = makeAdapter(tinyModules());
    expect(() =>
      mergeCat([
        { adapter: plain, weight: 1, name: "a" },
        { adapter: dora, weight: 1, name: "d" },
      ]),
    ).toThrow(/'d' is a DoRA adapter: .*export d --format merged-gguf/);
  });
});

/** m * row / ||row|| of W + s P(B) A in float64, P = llama's rope row permutation (GGUF row <- HF row). */
function referenceDora(w: Float32Array, adapter: Adapter, layer: number, stem: string, nHead: number | null): Float64Array {
  const m = adapter.modules.find((x) => x.layer === layer && GGUF_TENSOR_STEM[x.module] === stem)!;
  const scale = m.alpha / m.rank;
  const a = materializeA(m);
  const hfRowOf = (row: number): number => {
    if (nHead === null) return row;
    const d = m.outFeatures / nHead;
    const within = row % d;
    return Math.floor(row / d) * d + (within % 2) * (d / 2) + Math.floor(within / 2);
  };
  const out = new Float64Array(w.length);
  for (let o = 0; o < m.outFeatures; o++) {
    const hf = hfRowOf(o);
    let norm2 = 0;
    for (let i = 0; i < m.inFeatures; i++) {
      let sum = 0;
      for (let r = 0; r < m.rank; r++) sum += m.b[hf * m.rank + r]! * a[r * m.inFeatures + i]!;
      const v = w[o * m.inFeatures + i]! + scale * sum;
      out[o * m.inFeatures + i] = v;
      norm2 += v * v;
    }
    const factor = m.magnitude![hf]! / Math.sqrt(norm2);
    for (let i = 0; i < m.inFeatures; i++) out[o * m.inFeatures + i] = out[o * m.inFeatures + i]! * factor;
  }
  return out;
}

describe("DoRA merged model", () => {
  it("every adapted weight is m * (W + s B A) / ||W + s B A|| per row (q/k rows permuted, m with them)", async () => {
    const adapter = makeAdapter(doraModules(7));
    const out = join(tmp.path, "dora-merged.gguf");
    expect((await writeMergedModel(adapter, basePath, header, out)).mergedTensors).toBe(14);
    const merged = await readGgufFile(out);
    let compared = 0;
    for (const [index, info] of merged.tensors.entries()) {
      const match = /^blk\.(\d+)\.(\w+)\.weight$/.exec(info.name);
      const stem = match?.[2];
      if (stem === undefined || !Object.values(GGUF_TENSOR_STEM).includes(stem as never)) continue;
      const nHead = stem === "attn_q" ? 4 : stem === "attn_k" ? 2 : null;
      const base = await readTensorAsFloat32(basePath, header.tensors[index]!);
      const expected = referenceDora(base, adapter, Number(match![1]), stem, nHead);
      const actual = await readTensorAsFloat32(out, info);
      let worst = 0;
      for (let i = 0; i < expected.length; i++)
        worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (Math.abs(expected[i]!) + 1e-30));
      // one float32 rounding of a float64 result (2^-24 relative), with slack for the norm's float64 sum order
      expect(worst, info.name).toBeLessThanOrEqual(2 ** -22);
      compared++;
    }
    expect(compared).toBe(14);
  });
});

describe("a PEFT DoRA adapter (use_dora: true)", () => {
  it("keeps variant dora, never infers a LoRI-S mask from a zero B, and --variant must agree", () => {
    const fresh = makeAdapter(doraModules(10).map((m) => ({ ...m, b: new Float32Array(m.b.length) })));
    const { modules, summary } = recoverLoriStructure(fresh.config, fresh.modules);
    expect(summary).toMatchObject({ variant: "dora", maskInferred: false });
    expect(modules.every((m) => m.mask === undefined && m.magnitude !== undefined)).toBe(true);
    expect(() => recoverLoriStructure(fresh.config, fresh.modules, { variant: "lori-s" })).toThrow(/does not apply to a DoRA adapter/);
    const plain = makeAdapter(tinyModules());
    expect(() => recoverLoriStructure(plain.config, plain.modules, { variant: "dora" })).toThrow(/--variant dora needs a DoRA adapter/);
  });

  it("imports, is refused as a GGUF LoRA, and exports as a merged model equal to the float64 reference", async () => {
    const source = makeAdapter(doraModules(9));
    const tensors = new Map<string, Float32Array>();
    for (const m of source.modules) {
      tensors.set(`${peftPrefix(m.layer, m.module)}.lora_A.weight`, materializeA(m));
      tensors.set(`${peftPrefix(m.layer, m.module)}.lora_B.weight`, m.b);
      tensors.set(`${peftPrefix(m.layer, m.module)}.lora_magnitude_vector`, m.magnitude!);
    }
    const peftDir = join(tmp.path, "peft-dora");
    await writePeftDir(peftDir, { rank: 4, alpha: 8, tensors, config: { use_dora: true } });
    const adaptersDir = join(tmp.path, "store");
    const imported = await runCli(importCommand, [peftDir, "--name", "style", "--base", basePath, "--adapters-dir", adaptersDir]);
    expect(imported.error).toBeNull();
    const stored = await readAdapterDir(join(adaptersDir, "style"));
    expect(stored.config.use_dora).toBe(true);
    expect(stored.config.lori?.variant).toBe("dora");
    for (const [i, m] of stored.modules.entries()) expect(m.magnitude).toEqual(source.modules[i]!.magnitude);

    const run = (args: string[]) => runCli(exportCommand, ["style", "--adapters-dir", adaptersDir, ...args]);
    const asLora = await run(["--format", "gguf", "--base", basePath, "--out", join(tmp.path, "style-lora.gguf")]);
    expect(asLora.error?.message).toMatch(/'style' is a DoRA adapter: .*export style --format merged-gguf/);

    const out = join(tmp.path, "style-merged.gguf");
    const merged = await run(["--format", "merged-gguf", "--base", basePath, "--out", out]);
    expect(merged.error).toBeNull();
    const info = (await readGgufFile(out)).tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
    const base = await readTensorAsFloat32(basePath, header.tensors.find((t) => t.name === "blk.1.attn_q.weight")!);
    const expected = referenceDora(base, stored, 1, "attn_q", 4);
    const actual = await readTensorAsFloat32(out, info);
    let worst = 0;
    for (let i = 0; i < expected.length; i++)
      worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (Math.abs(expected[i]!) + 1e-30));
    expect(worst).toBeLessThanOrEqual(2 ** -22);
  });
});
