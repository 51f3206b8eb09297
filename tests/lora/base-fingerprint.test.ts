import { describe, expect, it } from "vitest";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { baseFingerprintOfGguf, computeBaseFingerprint } from "../../src/lora/base-fingerprint.js";
import { LoraError } from "../../src/lora/errors.js";

function header(
  architecture: GgufFile["metadata"] extends Map<string, infer V> ? V | undefined : never,
): Pick<GgufFile, "metadata" | "tensors"> {
  const metadata = new Map(architecture ? [["general.architecture", architecture]] : []);
  const tensors = [
    { name: "output.weight", type: "Q8_0", typeId: 8, shape: [64, 100], offset: 0, byteLength: 0 },
    { name: "blk.0.attn_q.weight", type: "F16", typeId: 1, shape: [64, 64], offset: 0, byteLength: 0 },
  ];
  return { metadata, tensors };
}

describe("baseFingerprintOfGguf", () => {
  it("is computeBaseFingerprint of the header's architecture and tensor names/shapes (dtypes ignored)", () => {
    const fp = baseFingerprintOfGguf(header({ type: "string", value: "llama" }));
    expect(fp).toEqual(
      computeBaseFingerprint("llama", [
        { name: "blk.0.attn_q.weight", shape: [64, 64] },
        { name: "output.weight", shape: [64, 100] },
      ]),
    );
  });

  it("refuses a header without a string general.architecture", () => {
    expect(() => baseFingerprintOfGguf(header(undefined))).toThrow(LoraError);
    expect(() => baseFingerprintOfGguf(header({ type: "uint32", value: 1 }))).toThrow(/general\.architecture/);
  });
});
