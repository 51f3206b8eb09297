import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { fixturePath, missingFixtureMessage } from "../support/fixtures.js";

const FIXTURE = "models/stories260K.gguf";
const path = fixturePath(FIXTURE);
if (!path) console.warn(missingFixtureMessage(FIXTURE));

describe.skipIf(!path)("reading the stories260K fixture header", () => {
  const file = () => readGgufFile(path!);

  it("reports the model hyper-parameters from the fixture README", async () => {
    const { version, metadata, alignment } = await file();
    expect(version).toBe(3);
    expect(alignment).toBe(32);
    const value = (key: string) => metadata.get(key)?.value;
    expect(value("general.architecture")).toBe("llama");
    expect(value("llama.embedding_length")).toBe(64);
    expect(value("llama.block_count")).toBe(5);
    expect(value("llama.attention.head_count")).toBe(8);
    expect(value("llama.attention.head_count_kv")).toBe(4);
    expect(value("llama.feed_forward_length")).toBe(172);
    expect(value("llama.attention.layer_norm_rms_epsilon")).toBeCloseTo(1e-5, 10);
    expect(value("tokenizer.ggml.model")).toBe("llama");
    expect((value("tokenizer.ggml.tokens") as unknown as string[]).length).toBe(512);
    expect([value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.eos_token_id")]).toEqual([1, 2]);
  });

  it("lists every tensor as F32 with the documented LoRA target shapes", async () => {
    const { tensors } = await file();
    const byName = new Map(tensors.map((t) => [t.name, t]));
    expect(tensors.every((t) => t.type === "F32")).toBe(true);
    expect(byName.get("token_embd.weight")?.shape).toEqual([64, 512]);
    for (let layer = 0; layer < 5; layer++) {
      // ggml ne order: [in, out] for the README's out x in.
      const shapes = Object.fromEntries(
        ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm"].map((name) => [
          name,
          byName.get(`blk.${layer}.${name}.weight`)?.shape,
        ]),
      );
      expect(shapes).toEqual({
        attn_q: [64, 64],
        attn_k: [64, 32],
        attn_v: [64, 32],
        attn_output: [64, 64],
        ffn_gate: [64, 172],
        ffn_up: [64, 172],
        ffn_down: [172, 64],
        attn_norm: [64],
        ffn_norm: [64],
      });
    }
  });

  it("agrees with node-llama-cpp's own GGUF parser on every tensor offset", async () => {
    const ours = await file();
    const theirs = await readGgufFileInfo(path!, { logWarnings: false });
    const theirTensors = theirs.fullTensorInfo ?? [];
    expect(theirTensors.length).toBe(ours.tensors.length);
    ours.tensors.forEach((tensor, i) => {
      const other = theirTensors[i]!;
      expect([tensor.name, tensor.typeId, tensor.shape, tensor.offset]).toEqual([
        other.name,
        other.ggmlType,
        other.dimensions.map(Number),
        Number(other.fileOffset),
      ]);
    });
  });

  it("reads tensor values (RMSNorm gains are finite and positive-ish)", async () => {
    const { tensors } = await file();
    const norm = tensors.find((t) => t.name === "blk.0.attn_norm.weight")!;
    const values = await readTensorAsFloat32(path!, norm);
    expect(values.length).toBe(64);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(values.reduce((a, b) => a + b, 0) / 64).toBeGreaterThan(0);
  });
});
