import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { CHATML_TEMPLATE, gpt2ByteAlphabet } from "../../src/model/byte-tokenizer.js";
import { createRandomHfLlamaWeights } from "../../src/model/hf-llama-weights.js";
import { countLlamaParameters } from "../../src/model/llama-config.js";
import { permuteRowsForRope } from "../../src/model/llama-permute.js";
import { BENCH_SHAPE, createTinyModel, tinyModelConfig } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";

describe("createTinyModel", () => {
  const dir = useTempDir();

  it("is deterministic: same options give byte-identical files, another seed does not", async () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => join(dir.path, `${n}.gguf`));
    await createTinyModel({ out: a!, seed: 5 });
    await createTinyModel({ out: b!, seed: 5 });
    await createTinyModel({ out: c!, seed: 6 });
    const [bytesA, bytesB, bytesC] = await Promise.all([a!, b!, c!].map((p) => readFile(p)));
    expect(bytesA!.equals(bytesB!)).toBe(true);
    expect(bytesA!.equals(bytesC!)).toBe(false);
  });

  it("writes the llama metadata, tokenizer and chat template llama.cpp needs", async () => {
    const out = join(dir.path, "meta.gguf");
    await createTinyModel({ out, layers: 3, embd: 32, heads: 4, kvHeads: 1, ff: 48, vocab: 300 });
    const { metadata, tensors } = await readGgufFile(out);
    const value = (key: string) => metadata.get(key)?.value;
    expect(value("general.architecture")).toBe("llama");
    expect(value("general.file_type")).toBe(0);
    expect([value("llama.block_count"), value("llama.embedding_length"), value("llama.feed_forward_length")]).toEqual([3, 32, 48]);
    expect([value("llama.attention.head_count"), value("llama.attention.head_count_kv"), value("llama.rope.dimension_count")]).toEqual([
      4, 1, 8,
    ]);
    expect(metadata.get("llama.rope.freq_base")).toEqual({ type: "float32", value: 10000 });
    expect(metadata.get("llama.attention.layer_norm_rms_epsilon")?.type).toBe("float32");
    expect(value("tokenizer.ggml.model")).toBe("gpt2");
    const tokens = value("tokenizer.ggml.tokens") as unknown as string[];
    expect(tokens.length).toBe(300);
    expect(tokens.slice(0, 256)).toEqual(gpt2ByteAlphabet());
    expect(tokens.slice(256, 261)).toEqual(["<|bos|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|reserved_0|>"]);
    expect(value("tokenizer.chat_template")).toBe(CHATML_TEMPLATE);
    expect(tensors.length).toBe(2 + 1 + 3 * 9);
    expect(tensors.find((t) => t.name === "token_embd.weight")?.shape).toEqual([32, 300]);
    expect(tensors.find((t) => t.name === "blk.2.attn_k.weight")?.shape).toEqual([32, 8]);
    expect(tensors.find((t) => t.name === "blk.0.ffn_down.weight")?.shape).toEqual([48, 32]);
  });

  it("stores q/k permuted for llama.cpp's rope layout and everything else unchanged", async () => {
    const out = join(dir.path, "perm.gguf");
    const config = await createTinyModel({ out, seed: 3 });
    const weights = createRandomHfLlamaWeights(config, 3);
    const file = await readGgufFile(out);
    const tensor = (name: string) => readTensorAsFloat32(out, file.tensors.find((t) => t.name === name)!);
    const d = config.nEmbd;
    const kvDim = (d / config.nHead) * config.nHeadKv;
    expect(await tensor("blk.1.attn_q.weight")).toEqual(
      permuteRowsForRope(weights.get("model.layers.1.self_attn.q_proj.weight")!, d, d, config.nHead),
    );
    expect(await tensor("blk.1.attn_k.weight")).toEqual(
      permuteRowsForRope(weights.get("model.layers.1.self_attn.k_proj.weight")!, kvDim, d, config.nHeadKv),
    );
    expect(await tensor("blk.1.attn_v.weight")).toEqual(weights.get("model.layers.1.self_attn.v_proj.weight"));
    expect(await tensor("output.weight")).toEqual(weights.get("lm_head.weight"));
  });

  it("keeps norms F32 in f16 mode, like llama.cpp's converter", async () => {
    const out = join(dir.path, "half.gguf");
    await createTinyModel({ out, dtype: "f16" });
    const { metadata, tensors } = await readGgufFile(out);
    expect(metadata.get("general.file_type")?.value).toBe(1);
    for (const t of tensors) expect([t.name, t.type]).toEqual([t.name, t.name.includes("norm") ? "F32" : "F16"]);
  });

  it("has ~23.6M parameters in the bench shape", () => {
    const params = countLlamaParameters(tinyModelConfig(BENCH_SHAPE));
    expect(params).toBeGreaterThan(23.6e6);
    expect(params).toBeLessThan(24e6);
  });

  it("rejects inconsistent shapes with one-line messages", async () => {
    const out = join(dir.path, "never.gguf");
    await expect(createTinyModel({ out, embd: 30, heads: 4 })).rejects.toThrow(/divisible by the head count/);
    await expect(createTinyModel({ out, heads: 4, kvHeads: 3 })).rejects.toThrow(/kv head count/);
    await expect(createTinyModel({ out, embd: 12, heads: 4 })).rejects.toThrow(/must be even/);
    await expect(createTinyModel({ out, vocab: 100 })).rejects.toThrow(/vocab size must be an integer >= 260/);
    await expect(createTinyModel({ out, seed: -1 })).rejects.toThrow(/seed must be an integer/);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });
});
