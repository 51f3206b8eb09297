import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { float32ToFloat16Bits } from "../../src/gguf/float16.js";
import { GgufHeaderEncoder } from "../../src/gguf/gguf-header-encoder.js";
import { decodeTensorBytes, readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { GgufError, type GgufTensorInfo } from "../../src/gguf/gguf-types.js";
import { writeGgufFile } from "../../src/gguf/gguf-writer.js";
import { useTempDir } from "../support/temp-dir.js";

/** A header built by hand, for shapes the writer would refuse to produce. */
function craft(build: (e: GgufHeaderEncoder) => void): Buffer {
  const encoder = new GgufHeaderEncoder();
  build(encoder);
  return Buffer.from(encoder.toBuffer());
}

function preamble(e: GgufHeaderEncoder, tensors: number | bigint, kvs: number | bigint, version = 3): void {
  e.u32(0x46554747);
  e.u32(version);
  e.u64(tensors);
  e.u64(kvs);
}

describe("GGUF reader on damaged files", () => {
  const dir = useTempDir();

  async function expectReadError(bytes: Buffer, message: RegExp): Promise<void> {
    const path = join(dir.path, "crafted.gguf");
    await writeFile(path, bytes);
    const error = await readGgufFile(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GgufError);
    expect((error as Error).message).toMatch(message);
  }

  it("fails cleanly on every truncation of a valid file", async () => {
    const path = join(dir.path, "whole.gguf");
    await writeGgufFile(path, {
      metadata: [
        ["general.architecture", { type: "string", value: "llama" }],
        ["tokens", { type: "array", itemType: "string", value: ["a", "bc", "def"] }],
        ["scores", { type: "array", itemType: "float32", value: [1, 2, 3] }],
      ],
      tensors: [
        { name: "a", type: "F32", shape: [4], data: new Float32Array(4) },
        { name: "b", type: "F16", shape: [2, 2], data: new Float32Array(4) },
      ],
    });
    const whole = await readFile(path);
    const cutPath = join(dir.path, "cut.gguf");
    const unexpected: string[] = [];
    for (let length = 0; length < whole.length; length++) {
      await writeFile(cutPath, whole.subarray(0, length));
      const error = await readGgufFile(cutPath).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!(error instanceof GgufError)) unexpected.push(`${length}: ${String(error)}`);
    }
    expect(unexpected).toEqual([]);
  });

  it("names bad magic, empty files and unsupported versions", async () => {
    await expectReadError(Buffer.from("GGML, not GGUF at all"), /not a GGUF file \(bad magic/);
    await expectReadError(Buffer.alloc(0), /not a GGUF file/);
    await expectReadError(
      craft((e) => preamble(e, 0, 0, 1)),
      /unsupported GGUF version 1/,
    );
    await expectReadError(
      craft((e) => preamble(e, 0, 0, 0x03000000)),
      /big-endian/,
    );
  });

  it("rejects absurd counts and lengths without allocating them", async () => {
    await expectReadError(
      craft((e) => preamble(e, 2n ** 62n, 0)),
      /implausible tensor count/,
    );
    await expectReadError(
      craft((e) => preamble(e, 0, 2n ** 40n)),
      /implausible metadata count/,
    );
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.u64(2n ** 40n); // key length
      }),
      /implausible metadata key length/,
    );
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.string("big");
        e.u32(9); // array
        e.u32(4); // of uint32
        e.u64(2n ** 40n);
      }),
      /implausible length of 'big'/,
    );
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.string("s");
        e.u32(8);
        e.u64(2n ** 50n);
      }),
      /implausible value of 's' length/,
    );
  });

  it("rejects unknown value types, nested arrays and invalid bools", async () => {
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.string("k");
        e.u32(99);
        e.u32(0);
      }),
      /unknown value type 99/,
    );
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.string("k");
        e.u32(9);
        e.u32(9);
        e.u64(0);
      }),
      /nested arrays are not supported/,
    );
    await expectReadError(
      craft((e) => {
        preamble(e, 0, 1);
        e.string("k");
        e.u32(7);
        e.zeros(0);
        e.u32(2);
      }),
      /invalid bool/,
    );
  });

  it("rejects bad tensor descriptions", async () => {
    const tensor = (dims: number[], type: number, offset: number) =>
      craft((e) => {
        preamble(e, 1, 0);
        e.string("t");
        e.u32(dims.length);
        for (const d of dims) e.u64(d);
        e.u32(type);
        e.u64(offset);
        e.zeros(64);
      });
    await expectReadError(tensor([4], 4, 0), /unknown ggml type id 4/);
    await expectReadError(tensor([1, 1, 1, 1, 1], 0, 0), /5 dimensions/);
    await expectReadError(tensor([4], 0, 8), /not 32-aligned/);
    await expectReadError(tensor([33], 8, 0), /not a multiple of the Q8_0 block size/);
    await expectReadError(tensor([1024], 0, 0), /truncated file: tensor 't'/);
    await expectReadError(tensor([2 ** 20, 2 ** 20], 0, 0), /truncated file/);
    await expectReadError(tensor([2 ** 30, 2 ** 30], 0, 0), /absurd element count/);
  });
});

describe("tensor decoding", () => {
  const info = (type: string, shape: number[], byteLength: number): GgufTensorInfo => ({
    name: "t",
    type,
    typeId: -1,
    shape,
    offset: 0,
    byteLength,
  });

  it("decodes BF16 as the top half of float32", () => {
    const values = new Float32Array([1.5, -2, 3.140625]); // all exact in bfloat16
    const bits = new Uint32Array(values.buffer);
    const bytes = Buffer.from(new Uint16Array(Array.from(bits, (b) => b >>> 16)).buffer);
    expect(decodeTensorBytes(bytes, info("BF16", [3], 6))).toEqual(values);
  });

  it("decodes Q8_0 blocks as scale times int8", () => {
    const block = Buffer.alloc(34 * 2);
    block.writeUInt16LE(float32ToFloat16Bits(0.5), 0);
    block.writeUInt16LE(float32ToFloat16Bits(-2), 34);
    for (let i = 0; i < 32; i++) {
      block.writeInt8(i - 16, 2 + i);
      block.writeInt8(127 - i, 36 + i);
    }
    const decoded = decodeTensorBytes(block, info("Q8_0", [64], 68));
    expect(decoded[0]).toBe(-8);
    expect(decoded[31]).toBe(7.5);
    expect(decoded[32]).toBe(-254);
    expect(decoded[63]).toBe(-192);
  });

  it("refuses types it cannot decode, naming the ones it can", async () => {
    expect(() => decodeTensorBytes(Buffer.alloc(144), info("Q4_K", [256], 144))).toThrow(/Q4_K.*F32, F16, BF16, Q8_0/);
    await expect(readTensorAsFloat32("/nonexistent/file.gguf", info("F32", [1], 4))).rejects.toThrow(/ENOENT/);
  });
});
