import { join } from "node:path";
import { LlamaCompletion } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/command.js";
import { modelCreateCommand } from "../../src/cli/commands/model-create.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";

// `model create --arch X` for every non-llama family: the metadata and tensors llama.cpp's loader for X
// requires (checked by reading the header back), and the file loads and generates in node-llama-cpp.

const shapeOf = (file: GgufFile, name: string) => file.tensors.find((t) => t.name === name)?.shape;
const value = (file: GgufFile, key: string) => file.metadata.get(key)?.value;

const expectations: Record<string, (file: GgufFile) => void> = {
  qwen2: (f) => {
    expect(shapeOf(f, "blk.0.attn_q.bias")).toEqual([64]);
    expect(shapeOf(f, "blk.1.attn_k.bias")).toEqual([32]);
    expect(shapeOf(f, "blk.1.attn_v.bias")).toEqual([32]);
    expect(shapeOf(f, "output.weight")).toEqual([64, 260]);
  },
  qwen3: (f) => {
    expect(shapeOf(f, "blk.0.attn_q_norm.weight")).toEqual([32]);
    expect(shapeOf(f, "blk.0.attn_k_norm.weight")).toEqual([32]);
    // --head-dim 32 with 4 heads: q is 128 wide while n_embd is 64 (as in Qwen3-0.6B, 1024 vs 16 x 128).
    expect(shapeOf(f, "blk.0.attn_q.weight")).toEqual([64, 128]);
    expect(shapeOf(f, "blk.0.attn_output.weight")).toEqual([128, 64]);
    expect(value(f, "qwen3.attention.key_length")).toBe(32);
    expect(f.tensors.some((t) => t.name.endsWith(".bias"))).toBe(false);
  },
  gemma2: (f) => {
    expect(value(f, "gemma2.attn_logit_softcapping")).toBe(50);
    expect(value(f, "gemma2.final_logit_softcapping")).toBe(30);
    expect(value(f, "gemma2.attention.sliding_window")).toBe(8);
    expect(shapeOf(f, "blk.0.post_attention_norm.weight")).toEqual([64]);
    expect(shapeOf(f, "blk.0.post_ffw_norm.weight")).toEqual([64]);
    expect(shapeOf(f, "output.weight")).toBeUndefined(); // tied: llama.cpp's gemma2 reads token_embd
  },
  gemma3: (f) => {
    expect(value(f, "gemma3.rope.freq_base_swa")).toBe(10_000);
    expect(value(f, "gemma3.attention.sliding_window_pattern")).toBe(2);
    expect(shapeOf(f, "blk.1.attn_q_norm.weight")).toEqual([16]);
    expect(shapeOf(f, "blk.1.post_ffw_norm.weight")).toEqual([64]);
  },
  phi3: (f) => {
    expect(shapeOf(f, "blk.0.attn_qkv.weight")).toEqual([64, 64 + 2 * 32]);
    expect(shapeOf(f, "blk.0.ffn_up.weight")).toEqual([64, 2 * 128]);
    expect(shapeOf(f, "blk.0.ffn_gate.weight")).toBeUndefined();
    expect(shapeOf(f, "blk.0.attn_q.weight")).toBeUndefined();
  },
};

describe("model create --arch", () => {
  const dir = useTempDir();

  for (const [arch, expectLayout] of Object.entries(expectations)) {
    it(`${arch}: writes the family's layout, and node-llama-cpp loads it and generates`, async () => {
      const out = join(dir.path, `${arch}.gguf`);
      const extra = arch === "qwen3" ? ["--head-dim", "32"] : [];
      const { code, stdout } = await runCommand(modelCreateCommand, ["create", "--arch", arch, "--out", out, "--seed", "3", ...extra]);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`^wrote .*: ${arch}, 2 layers, d=64`));
      const header = await readGgufFile(out);
      expect(value(header, "general.architecture")).toBe(arch);
      expectLayout(header);

      const model = await (await getTestLlama()).loadModel({ modelPath: out });
      try {
        const context = await model.createContext({ contextSize: 128, threads: 1 });
        const sequence = context.getSequence();
        const completion = new LlamaCompletion({ contextSequence: sequence });
        const first = await completion.generateCompletionWithMeta("Once upon", { maxTokens: 12, temperature: 0, customStopTriggers: [] });
        await sequence.clearHistory();
        const second = await completion.generateCompletionWithMeta("Once upon", { maxTokens: 12, temperature: 0, customStopTriggers: [] });
        expect(first.response).toBe(second.response);
        expect(model.tokenize(first.response).length).toBeGreaterThan(0);
        await context.dispose();
      } finally {
        await model.dispose();
      }
    });
  }

  it.each(["qwen2", "llama"])(
    "--dtype q8_0 writes %s with Q8_0 weight matrices (norms, biases F32) that node-llama-cpp runs",
    async (arch) => {
      const out = join(dir.path, `${arch}-q8_0.gguf`);
      const { stdout } = await runCommand(modelCreateCommand, ["create", "--arch", arch, "--dtype", "q8_0", "--ff", "96", "--out", out]);
      expect(stdout).toMatch(new RegExp(`: ${arch}, .*, q8_0, `));
      const header = await readGgufFile(out);
      const types = new Map(header.tensors.map((t) => [t.name, t.type]));
      expect([types.get("blk.0.attn_q.weight"), types.get("blk.0.ffn_down.weight"), types.get("output.weight")]).toEqual([
        "Q8_0",
        "Q8_0",
        "Q8_0",
      ]);
      expect(types.get("blk.0.attn_norm.weight")).toBe("F32");
      if (arch === "qwen2") expect(types.get("blk.0.attn_q.bias")).toBe("F32");
      expect(value(header, "general.file_type")).toBe(7);
      const model = await (await getTestLlama()).loadModel({ modelPath: out });
      try {
        const context = await model.createContext({ contextSize: 64, threads: 1 });
        const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
        const text = await completion.generateCompletion("Once upon", { maxTokens: 8, temperature: 0, customStopTriggers: [] });
        expect(model.tokenize(text).length).toBeGreaterThan(0);
        await context.dispose();
      } finally {
        await model.dispose();
      }
    },
  );

  it("refuses an unknown --arch and a --head-dim the family cannot take, in one line", async () => {
    const out = join(dir.path, "never.gguf");
    await expect(modelCreateCommand.run(["create", "--arch", "mamba", "--out", out])).rejects.toThrow(
      new CliError("--arch must be one of llama, qwen2, qwen3, gemma2, gemma3, phi3, got 'mamba'"),
    );
    await expect(modelCreateCommand.run(["create", "--arch", "phi3", "--head-dim", "32", "--out", out])).rejects.toThrow(
      /--head-dim applies to qwen3/,
    );
    await expect(modelCreateCommand.run(["create", "--arch", "qwen3", "--head-dim", "7", "--out", out])).rejects.toThrow(
      /head size 7 must be even/,
    );
  });
});
