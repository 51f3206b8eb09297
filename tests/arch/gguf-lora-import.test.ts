// `lori-server import FILE.gguf`: GGUF LoRA files as llama.cpp users have them. Round trips through our own
// export, files written the way convert_lora_to_gguf.py writes them (q/k B rows permuted for llama) served by
// node-llama-cpp against the float64 reference of the imported adapter, quantized tensors, and the refusals.

import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { beforeAll, describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/command.js";
import { exportCommand } from "../../src/cli/commands/export.js";
import { importCommand } from "../../src/cli/commands/import.js";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../../src/gguf/float16.js";
import { GgufHeaderEncoder } from "../../src/gguf/gguf-header-encoder.js";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import type { GgufMetadataValue } from "../../src/gguf/gguf-types.js";
import { writeGgufFile } from "../../src/gguf/gguf-writer.js";
import { type Adapter, materializeA } from "../../src/lora/adapter.js";
import { peftPrefix } from "../../src/lora/adapter-layout.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { importGgufLora } from "../../src/lora/gguf-lora-import.js";
import { defaultArchConfig } from "../../src/model/arch-config.js";
import { createArchModel } from "../../src/model/arch-tiny-model.js";
import { createByteTokenizer } from "../../src/model/byte-tokenizer.js";
import { createRandomHfArchWeights } from "../../src/model/hf-arch-weights.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { permuteRowsForRope } from "../../src/model/llama-permute.js";
import { tinyModelConfig } from "../../src/model/tiny-model.js";
import { writeArchGguf } from "../../src/model/write-arch-gguf.js";
import { writeLlamaGguf } from "../../src/model/write-llama-gguf.js";
import { randomPeftTensors, runCli, writePeftDir } from "../lora/peft-fixtures.js";
import { EXACT_CONTEXT_OPTIONS, getLastPositionLogProbs, maxAbsDifference } from "../support/llama-logits.js";
import { referenceArchLogits } from "../support/reference-arch.js";
import { logSoftmax, type ReferenceLoraAdapter, referenceLlamaLogits } from "../support/reference-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { adaptableShapesOfGguf } from "./helpers.js";

async function ok(argv: string[], command = importCommand): Promise<string> {
  const result = await runCli(command, argv);
  if (result.error) throw result.error;
  expect(result.code).toBe(0);
  return result.stdout;
}

async function tensorBytes(path: string): Promise<Map<string, Buffer>> {
  const header = await readGgufFile(path);
  const file = await open(path, "r");
  try {
    const out = new Map<string, Buffer>();
    for (const t of header.tensors) {
      const bytes = Buffer.alloc(t.byteLength);
      await file.read(bytes, 0, t.byteLength, t.offset);
      out.set(t.name, bytes);
    }
    return out;
  } finally {
    await file.close();
  }
}

/** The PEFT view of an adapter for the float64 references. */
function referenceOf(adapter: Adapter): ReferenceLoraAdapter {
  const alpha = adapter.modules[0]!.alpha;
  const tensors = new Map<string, Float32Array>();
  for (const m of adapter.modules) {
    expect(m.alpha).toBe(alpha);
    tensors.set(`${peftPrefix(m.layer, m.module)}.lora_A.weight`, materializeA(m));
    tensors.set(`${peftPrefix(m.layer, m.module)}.lora_B.weight`, m.b);
  }
  return { tensors, alpha };
}

/**
 * A GGUF LoRA as convert_lora_to_gguf.py writes it from PEFT tensors: lora_a = A, lora_b = B (q/k B rows
 * rope-permuted when `permuteHeads` is given, as LlamaModel.modify_tensors does), float32 alpha.
 */
async function writeConvertedLora(
  path: string,
  architecture: string,
  tensors: Map<string, Float32Array>,
  rank: number,
  alpha: number,
  stem: (module: string) => string,
  permuteHeads?: { q: number; k: number },
): Promise<void> {
  const entries = [...tensors.keys()].filter((n) => n.endsWith("lora_A.weight"));
  const ggufTensors = entries.flatMap((aName) => {
    const match = /layers\.(\d+)\.\w+\.(\w+)\.lora_A\.weight$/.exec(aName)!;
    const [layer, module] = [Number(match[1]), match[2]!];
    const a = tensors.get(aName)!;
    let b = tensors.get(aName.replace("lora_A", "lora_B"))!;
    const inDim = a.length / rank;
    const out = b.length / rank;
    if (permuteHeads && module === "q_proj") b = permuteRowsForRope(b, out, rank, permuteHeads.q);
    if (permuteHeads && module === "k_proj") b = permuteRowsForRope(b, out, rank, permuteHeads.k);
    const base = `blk.${layer}.${stem(module)}.weight`;
    return [
      { name: `${base}.lora_a`, type: "F32" as const, shape: [inDim, rank], data: a },
      { name: `${base}.lora_b`, type: "F32" as const, shape: [rank, out], data: b },
    ];
  });
  await writeGgufFile(path, {
    metadata: [
      ["general.type", { type: "string", value: "adapter" }],
      ["general.architecture", { type: "string", value: architecture }],
      ["adapter.type", { type: "string", value: "lora" }],
      ["adapter.lora.alpha", { type: "float32", value: alpha }],
    ],
    tensors: ggufTensors,
  });
}

const STEMS: Record<string, string> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
  qkv_proj: "attn_qkv",
  gate_up_proj: "ffn_up",
};

describe("import FILE.gguf", () => {
  const dir = useTempDir();
  const adapters = () => join(dir.path, "adapters");
  const bases: Record<string, string> = {};

  beforeAll(async () => {
    for (const arch of ["llama", "qwen2", "phi3"] as const) {
      bases[arch] = join(dir.path, `${arch}.gguf`);
      await createArchModel({ out: bases[arch]!, architecture: arch, seed: 9 });
    }
  });

  it("re-imports our export --format gguf bit for bit (F32), for llama, qwen2 and phi3", async () => {
    for (const arch of ["llama", "qwen2", "phi3"]) {
      const base = bases[arch]!;
      const peft = join(dir.path, `peft-${arch}`);
      const header = await readGgufFile(base);
      await writePeftDir(peft, { rank: 4, alpha: 8, tensors: randomPeftTensors(adaptableShapesOfGguf(header), { rank: 4, seed: 31 }) });
      const store = ["--adapters-dir", adapters(), "--base", base];
      await ok([peft, "--name", `${arch}-a`, ...store]);
      const first = join(dir.path, `${arch}-a.gguf`);
      await ok([`${arch}-a`, "--format", "gguf", "--out", first, ...store], exportCommand);
      const stdout = await ok([first, "--name", `${arch}-b`, ...store]);
      expect(stdout).toMatch(new RegExp(`^imported ${arch}-b: lora, ${2 * (arch === "phi3" ? 4 : 7)} modules, rank 4`));
      const second = join(dir.path, `${arch}-b.gguf`);
      await ok([`${arch}-b`, "--format", "gguf", "--out", second, ...store], exportCommand);

      expect(await tensorBytes(second), arch).toEqual(await tensorBytes(first));
      expect((await readGgufFile(second)).metadata.get("adapter.lora.alpha")).toEqual({ type: "float32", value: 8 });
      const [a, b] = [await readAdapterDir(join(adapters(), `${arch}-a`)), await readAdapterDir(join(adapters(), `${arch}-b`))];
      expect(b.modules.map((m) => [m.layer, m.module, m.rank, m.alpha])).toEqual(
        a.modules.map((m) => [m.layer, m.module, m.rank, m.alpha]),
      );
      b.modules.forEach((m, i) => {
        expect(materializeA(m)).toEqual(materializeA(a.modules[i]!));
        expect(m.b).toEqual(a.modules[i]!.b); // HF row order again: the q/k permutation was undone
      });
      expect(b.config.lori?.base_fingerprint?.sha256).toBe(a.config.lori?.base_fingerprint?.sha256);
      expect(b.config.lori?.lineage.at(-1)).toMatchObject({ op: "import", from: "gguf", source: `${arch}-a.gguf` });
    }
  });

  it("a converter-written llama / qwen2 / phi3 LoRA served by node-llama-cpp matches the float64 reference of its import", async () => {
    const llama = await getTestLlama();
    const rank = 4;
    const alpha = 6;
    const sequences = [[256, ...Buffer.from("Hello, world")], Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % 260)];
    for (const arch of ["llama", "qwen2", "phi3"] as const) {
      const modelPath = join(dir.path, `parity-${arch}.gguf`);
      let reference: (tokens: number[], adapters: ReferenceLoraAdapter[]) => Float64Array;
      if (arch === "llama") {
        const config = tinyModelConfig({});
        const weights = createRandomHfLlamaWeights(config, 77);
        await writeLlamaGguf(modelPath, { config, weights, dtype: "f32", tokenizer: createByteTokenizer() });
        reference = (tokens, adapters) => logSoftmax(referenceLlamaLogits(config, weights, tokens, { adapters }).at(-1)!);
      } else {
        const config = defaultArchConfig(arch, { nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128, vocabSize: 260 });
        const weights = createRandomHfArchWeights(config, 77);
        await writeArchGguf(modelPath, { config, weights, dtype: "f32", tokenizer: createByteTokenizer() });
        reference = (tokens, adapters) => logSoftmax(referenceArchLogits(config, weights, tokens, { adapters }).at(-1)!);
      }
      const header = await readGgufFile(modelPath);
      const tensors = randomPeftTensors(adaptableShapesOfGguf(header), { rank, seed: 41, bScale: 0.3 });
      const loraPath = join(dir.path, `converted-${arch}.gguf`);
      await writeConvertedLora(loraPath, arch, tensors, rank, alpha, (m) => STEMS[m]!, arch === "llama" ? { q: 4, k: 2 } : undefined);
      const { adapter } = await importGgufLora(loraPath, header);

      const model = await llama.loadModel({ modelPath });
      try {
        const context = await model.createContext({
          contextSize: 128,
          ...EXACT_CONTEXT_OPTIONS,
          lora: { adapters: [{ filePath: loraPath, scale: 1 }] },
        });
        const sequence = context.getSequence();
        let worst = 0;
        let effect = 0;
        for (const tokens of sequences) {
          const actual = await getLastPositionLogProbs(sequence, tokens as Token[]);
          const expected = reference(tokens, [referenceOf(adapter)]);
          worst = Math.max(worst, maxAbsDifference(actual, expected));
          effect = Math.max(effect, maxAbsDifference(expected, reference(tokens, [])));
        }
        await context.dispose();
        expect(worst, arch).toBeLessThan(1e-4);
        expect(effect, arch).toBeGreaterThan(0.05);
        // ...and the imported B is the PEFT B, in HF row order, not the file's permuted rows.
        const q = adapter.modules.find((m) => m.module === (arch === "phi3" ? "qkv_proj" : "q_proj"))!;
        expect(q.b).toEqual(tensors.get(`${peftPrefix(q.layer, q.module)}.lora_B.weight`));
      } finally {
        await model.dispose();
      }
    }
  });

  it("reads F16, BF16 and Q8_0 tensors as their exact float values", async () => {
    const base = bases.llama!;
    const header = await readGgufFile(base);
    // Rank 32: Q8_0 blocks run along ne[0], which for lora_b is the rank.
    const rank = 32;
    const a = Float32Array.from({ length: 64 * rank }, (_, i) => Math.sin(i * 0.37) * 0.2);
    const b = Float32Array.from({ length: rank * 64 }, (_, i) => Math.cos(i * 0.11) * 0.5);
    const path = join(dir.path, "quantized.gguf");
    await writeRawGguf(
      path,
      [
        ["general.type", { type: "string", value: "adapter" }],
        ["general.architecture", { type: "string", value: "llama" }],
        ["adapter.type", { type: "string", value: "lora" }],
        ["adapter.lora.alpha", { type: "float32", value: 16 }],
      ],
      [
        { name: "blk.0.attn_output.weight.lora_a", type: "Q8_0", shape: [64, rank], values: a },
        { name: "blk.0.attn_output.weight.lora_b", type: "BF16", shape: [rank, 64], values: b },
        {
          name: "blk.1.ffn_down.weight.lora_a",
          type: "F16",
          shape: [128, rank],
          values: Float32Array.from({ length: 128 * rank }, (_, i) => (i % 7) * 0.01),
        },
        { name: "blk.1.ffn_down.weight.lora_b", type: "Q8_0", shape: [rank, 64], values: b },
      ],
    );
    const { adapter } = await importGgufLora(path, header);
    const [o, down] = adapter.modules as [(typeof adapter.modules)[0], (typeof adapter.modules)[0]];
    expect([o.module, o.rank, o.alpha, down.module]).toEqual(["o_proj", 32, 16, "down_proj"]);
    expect(materializeA(o)).toEqual(dequantizeQ8_0(a));
    expect(o.b).toEqual(Float32Array.from(b, (x) => bf16Value(x)));
    expect(materializeA(down)).toEqual(
      Float32Array.from({ length: 128 * rank }, (_, i) => float16BitsToFloat32(float32ToFloat16Bits((i % 7) * 0.01))),
    );
    expect(down.b).toEqual(dequantizeQ8_0(b));
    // The reader agrees with the independent decoding above.
    const lora = await readGgufFile(path);
    expect(await readTensorAsFloat32(path, lora.tensors[0]!)).toEqual(dequantizeQ8_0(a));
  });

  describe("refusals: one line, nothing written", () => {
    let llamaLora: string;
    beforeAll(async () => {
      const header = await readGgufFile(bases.llama!);
      llamaLora = join(dir.path, "plain-llama.gguf");
      await writeConvertedLora(
        llamaLora,
        "llama",
        randomPeftTensors(adaptableShapesOfGguf(header), { rank: 2, seed: 5 }),
        2,
        2,
        (m) => STEMS[m]!,
        { q: 4, k: 2 },
      );
    });

    async function variant(name: string, edit: (metadata: Map<string, GgufMetadataValue>) => void): Promise<string> {
      const source = await readGgufFile(llamaLora);
      const metadata = new Map(source.metadata);
      edit(metadata);
      const tensors = [];
      for (const t of source.tensors) {
        tensors.push({ name: t.name, type: "F32" as const, shape: t.shape, data: await readTensorAsFloat32(llamaLora, t) });
      }
      const path = join(dir.path, name);
      await writeGgufFile(path, { metadata: [...metadata], tensors });
      return path;
    }

    async function expectRefused(file: string, base: string, pattern: RegExp): Promise<void> {
      const store = join(dir.path, "refusals");
      const result = await runCli(importCommand, [file, "--name", "x", "--base", base, "--adapters-dir", store]);
      expect(result.error).toBeInstanceOf(CliError);
      expect(result.error!.message).not.toContain("\n");
      expect(result.error!.message).toMatch(pattern);
      expect(await readdir(store).catch(() => [])).toEqual([]);
    }

    it("a GGUF that is a model, not an adapter", async () => {
      await expectRefused(
        bases.qwen2!,
        bases.qwen2!,
        /qwen2\.gguf: cannot import: it is a model \(general\.type 'model'\), not a LoRA adapter/,
      );
    });

    it("an activated LoRA (aLoRA invocation tokens)", async () => {
      const alora = await variant("alora.gguf", (m) =>
        m.set("adapter.alora.invocation_tokens", { type: "array", itemType: "uint32", value: [258, 10] }),
      );
      await expectRefused(alora, bases.llama!, /activated LoRA \(adapter\.alora\.invocation_tokens\)/);
    });

    it("a missing alpha", async () => {
      const noAlpha = await variant("no-alpha.gguf", (m) => m.delete("adapter.lora.alpha"));
      await expectRefused(noAlpha, bases.llama!, /missing metadata 'adapter\.lora\.alpha'/);
    });

    it("another architecture's LoRA (a qwen2 file against a llama base)", async () => {
      const qwen = await variant("qwen-named.gguf", (m) => m.set("general.architecture", { type: "string", value: "qwen2" }));
      await expectRefused(qwen, bases.llama!, /the adapter is for architecture 'qwen2', the base is 'llama'/);
    });

    it("tensors that do not match the base (another llama size)", async () => {
      const other = join(dir.path, "llama-ff96.gguf");
      await createArchModel({ out: other, architecture: "llama", ff: 96 });
      await expectRefused(llamaLora, other, /'blk\.0\.ffn_gate\.weight': lora_a \[64,2\] \/ lora_b \[2,128\] do not fit base \[64,96\]/);
    });

    it("a pair on a tensor that is not an adaptable projection", async () => {
      const renamed = join(dir.path, "output-pair.gguf");
      const a = new Float32Array(128).fill(0.01);
      await writeGgufFile(renamed, {
        metadata: [...(await readGgufFile(llamaLora)).metadata],
        tensors: [
          { name: "blk.0.attn_output.weight.lora_a", type: "F32", shape: [64, 2], data: a },
          { name: "blk.0.attn_output.weight.lora_b", type: "F32", shape: [2, 64], data: new Float32Array(128).fill(0.1) },
          { name: "output.weight.lora_a", type: "F32", shape: [64, 2], data: a },
          { name: "output.weight.lora_b", type: "F32", shape: [2, 260], data: new Float32Array(520) },
        ],
      });
      await expectRefused(renamed, bases.llama!, /'output\.weight' is not a projection adapters can target on llama/);
    });
  });
});

/** Q8_0 as ggml quantizes it: per block of 32, d = max|x| / 127 stored as f16, q = round(x / d). */
function quantizeQ8_0(values: Float32Array): Buffer {
  const out = Buffer.alloc((values.length / 32) * 34);
  for (let block = 0; block < values.length / 32; block++) {
    const slice = values.subarray(block * 32, block * 32 + 32);
    const amax = Math.max(...Array.from(slice, Math.abs));
    const d = amax / 127;
    const id = d === 0 ? 0 : 1 / d;
    out.writeUInt16LE(float32ToFloat16Bits(d), block * 34);
    for (let i = 0; i < 32; i++) out.writeInt8(Math.round(slice[i]! * id), block * 34 + 2 + i);
  }
  return out;
}

function dequantizeQ8_0(values: Float32Array): Float32Array {
  const bytes = quantizeQ8_0(values);
  return Float32Array.from(values, (_, i) => {
    const block = Math.floor(i / 32);
    return Math.fround(float16BitsToFloat32(bytes.readUInt16LE(block * 34)) * bytes.readInt8(block * 34 + 2 + (i % 32)));
  });
}

/** bfloat16 = the top 16 bits of the float32, rounded to nearest even. */
function bf16Bits(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}
const bf16Value = (x: number) => new Float32Array(new Uint32Array([bf16Bits(x) << 16]).buffer)[0]!;

/** A GGUF v3 file with tensors in any of F32 / F16 / BF16 / Q8_0 (our writer only writes F32 and F16). */
async function writeRawGguf(
  path: string,
  metadata: Array<[string, GgufMetadataValue]>,
  tensors: Array<{ name: string; type: "F16" | "BF16" | "Q8_0"; shape: number[]; values: Float32Array }>,
): Promise<void> {
  const encoded = tensors.map((t) => {
    if (t.type === "Q8_0") return quantizeQ8_0(t.values);
    const out = Buffer.alloc(t.values.length * 2);
    t.values.forEach((v, i) => out.writeUInt16LE(t.type === "F16" ? float32ToFloat16Bits(v) : bf16Bits(v), i * 2));
    return out;
  });
  const typeId = { F16: 1, BF16: 30, Q8_0: 8 } as const;
  const align = (n: number) => Math.ceil(n / 32) * 32;
  const encoder = new GgufHeaderEncoder();
  encoder.u32(0x46554747); // "GGUF"
  encoder.u32(3);
  encoder.u64(tensors.length);
  encoder.u64(metadata.length);
  for (const [key, value] of metadata) {
    encoder.string(key);
    encoder.metadataValue(key, value);
  }
  let offset = 0;
  tensors.forEach((t, i) => {
    encoder.string(t.name);
    encoder.u32(t.shape.length);
    for (const d of t.shape) encoder.u64(d);
    encoder.u32(typeId[t.type]);
    encoder.u64(offset);
    offset = align(offset + encoded[i]!.length);
  });
  encoder.zeros(align(encoder.byteLength) - encoder.byteLength);
  const parts: Buffer[] = [encoder.toBuffer()];
  for (const bytes of encoded) parts.push(bytes, Buffer.alloc(align(bytes.length) - bytes.length));
  const file = await open(path, "w");
  try {
    await file.write(Buffer.concat(parts));
  } finally {
    await file.close();
  }
}
