import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile, GgufMetadataValue, GgufTensorInput } from "../../src/gguf/gguf-types.js";
import { writeGgufFile } from "../../src/gguf/gguf-writer.js";
import { unpermuteRowsForRope } from "../../src/model/llama-permute.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { makeAdapter, materializeA, moduleScale } from "../../src/lora/adapter.js";
import { compileGgufLora, planGgufLora } from "../../src/lora/gguf-lora.js";
import { validateGgufLora } from "../../src/lora/gguf-lora-validate.js";
import { useTempDir } from "../support/temp-dir.js";
import { randomModule, tinyModules } from "./helpers.js";

const meta = (entries: Record<string, GgufMetadataValue>): Array<[string, GgufMetadataValue]> => Object.entries(entries);
const str = (value: string): GgufMetadataValue => ({ type: "string", value });

describe("GGUF LoRA compile", () => {
  const dir = useTempDir();
  let base: GgufFile;
  beforeAll(async () => {
    await createTinyModel({ out: join(dir.path, "base.gguf"), seed: 1 });
    base = await readGgufFile(join(dir.path, "base.gguf"));
  });

  it("writes llama.cpp's metadata, float32 alpha and [in, r] / [r, out] tensors that validate", async () => {
    const adapter = makeAdapter(tinyModules({ seed: 5, sparsity: 0.9 }));
    const path = join(dir.path, "a.gguf");
    const summary = await compileGgufLora(adapter, base, path, { dtype: "F16", name: "a" });
    expect(summary.alpha).toBe(8);
    expect(summary.ranks.get("blk.1.ffn_down.weight")).toBe(4);
    const header = await readGgufFile(path);
    expect(header.metadata.get("general.type")).toEqual(str("adapter"));
    expect(header.metadata.get("general.architecture")).toEqual(str("llama"));
    expect(header.metadata.get("adapter.type")).toEqual(str("lora"));
    expect(header.metadata.get("adapter.lora.alpha")).toEqual({ type: "float32", value: 8 });
    const a = header.tensors.find((t) => t.name === "blk.0.ffn_gate.weight.lora_a")!;
    const b = header.tensors.find((t) => t.name === "blk.0.ffn_gate.weight.lora_b")!;
    expect([a.type, a.shape, b.shape]).toEqual(["F16", [64, 4], [4, 128]]);
    expect(header.tensors.length).toBe(28);
  });

  it("folds per-module scales into B so that llama.cpp's G / r_m gives each module its own alpha / r", () => {
    const modules = tinyModules({ rank: (m, layer) => (m === "q_proj" ? 8 : 4 + layer) });
    const adapter = makeAdapter(
      modules.map((m) => (m.module === "v_proj" ? { ...m, alpha: 3 } : m)),
      { useRslora: true },
    );
    const plan = planGgufLora(adapter, base);
    const alpha = plan.metadata.find(([k]) => k === "adapter.lora.alpha")![1].value as number;
    for (const m of adapter.modules) {
      const stem = `blk.${m.layer}.${({ q_proj: "attn_q", k_proj: "attn_k", v_proj: "attn_v", o_proj: "attn_output", gate_proj: "ffn_gate", up_proj: "ffn_up", down_proj: "ffn_down" } as Record<string, string>)[m.module]}.weight`;
      const b = plan.tensors.find((t) => t.name === `${stem}.lora_b`)!;
      const a = plan.tensors.find((t) => t.name === `${stem}.lora_a`)!;
      expect(a.data).toEqual(materializeA(m));
      let bRows = b.data;
      if (m.module === "q_proj") bRows = unpermuteRowsForRope(b.data, m.outFeatures, m.rank, 4);
      if (m.module === "k_proj") bRows = unpermuteRowsForRope(b.data, m.outFeatures, m.rank, 2);
      // What llama.cpp will apply: (alpha / r) * B_gguf must equal the module's PEFT scale * B.
      const expectedScale = moduleScale(m, true);
      bRows.forEach((v, i) => expect((alpha / b.shape[0]!) * v).toBeCloseTo(expectedScale * m.b[i]!, 5));
    }
  });

  it("leaves q/k rows alone when the adapter is already in GGUF order", () => {
    const adapter = makeAdapter(tinyModules());
    const plan = planGgufLora(adapter, base, { qkRowOrder: "gguf" });
    const q = adapter.modules.find((m) => m.layer === 0 && m.module === "q_proj")!;
    expect(plan.tensors.find((t) => t.name === "blk.0.attn_q.weight.lora_b")!.data).toEqual(q.b);
  });

  it("refuses adapters whose modules do not fit the base", () => {
    const wrong = makeAdapter([randomModule({ layer: 0, module: "q_proj", inFeatures: 64, outFeatures: 65 })]);
    expect(() => planGgufLora(wrong, base)).toThrow(/wrong base model/);
    const deep = makeAdapter([randomModule({ layer: 7, module: "q_proj", inFeatures: 64, outFeatures: 64 })]);
    expect(() => planGgufLora(deep, base)).toThrow(/blk.7.attn_q.weight .* does not exist/);
  });
});

describe("GGUF LoRA validation catches what would abort or fail inside llama.cpp", () => {
  const dir = useTempDir();
  let base: GgufFile;
  let counter = 0;
  beforeAll(async () => {
    await createTinyModel({ out: join(dir.path, "base.gguf"), seed: 1 });
    base = await readGgufFile(join(dir.path, "base.gguf"));
  });
  const pair = (name: string, inF: number, out: number, r = 2): GgufTensorInput[] => [
    { name: `${name}.lora_a`, type: "F32", shape: [inF, r], data: new Float32Array(inF * r) },
    { name: `${name}.lora_b`, type: "F32", shape: [r, out], data: new Float32Array(out * r) },
  ];
  const good = {
    "general.type": str("adapter"),
    "general.architecture": str("llama"),
    "adapter.type": str("lora"),
    "adapter.lora.alpha": { type: "float32", value: 4 } as GgufMetadataValue,
  };
  async function check(metadata: Record<string, GgufMetadataValue>, tensors: GgufTensorInput[]) {
    const path = join(dir.path, `v${counter++}.gguf`);
    await writeGgufFile(path, { metadata: meta(metadata), tensors });
    return validateGgufLora(path, base);
  }

  it("accepts a well-formed adapter", async () => {
    const summary = await check(good, pair("blk.0.attn_q.weight", 64, 64));
    expect(summary.alpha).toBe(4);
  });

  it("an alpha stored as float64 or uint32", async () => {
    await expect(
      check({ ...good, "adapter.lora.alpha": { type: "float64", value: 4 } }, pair("blk.0.attn_q.weight", 64, 64)),
    ).rejects.toThrow(/adapter.lora.alpha' must be float32, found float64/);
    await expect(
      check({ ...good, "adapter.lora.alpha": { type: "uint32", value: 4 } }, pair("blk.0.attn_q.weight", 64, 64)),
    ).rejects.toThrow(/found uint32/);
  });

  it("a wrong or wrongly typed general.type, adapter.type or architecture", async () => {
    const t = pair("blk.0.attn_q.weight", 64, 64);
    await expect(check({ ...good, "general.type": str("model") }, t)).rejects.toThrow(/general.type' is 'model'/);
    await expect(check({ ...good, "general.type": { type: "uint32", value: 1 } }, t)).rejects.toThrow(/general.type' must be a string/);
    await expect(check({ ...good, "general.architecture": str("qwen2") }, t)).rejects.toThrow(/'qwen2', expected 'llama'/);
    const { "adapter.type": _dropped, ...noType } = good;
    await expect(check(noType, t)).rejects.toThrow(/missing metadata 'adapter.type'/);
  });

  it("tensors missing from the base, mismatched shapes, inconsistent ranks and lone halves", async () => {
    await expect(check(good, pair("blk.9.attn_q.weight", 64, 64))).rejects.toThrow(/does not exist in the base/);
    await expect(check(good, pair("blk.0.attn_k.weight", 64, 64))).rejects.toThrow(/do not fit base \[64,32\]/);
    const [a] = pair("blk.0.attn_q.weight", 64, 64, 2);
    const [, b] = pair("blk.0.attn_q.weight", 64, 64, 3);
    await expect(check(good, [a!, b!])).rejects.toThrow(/ranks differ/);
    await expect(check(good, [a!])).rejects.toThrow(/has lora_a but no lora_b/);
    await expect(
      check(good, [
        ...pair("blk.0.attn_q.weight", 64, 64),
        { name: "blk.0.attn_q.weight.extra", type: "F32", shape: [1], data: new Float32Array(1) },
      ]),
    ).rejects.toThrow(/unexpected tensor/);
  });
});
