import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../../src/gguf/float16.js";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { GgufError, type GgufMetadataValue, type GgufTensorInput } from "../../src/gguf/gguf-types.js";
import { writeGgufFile } from "../../src/gguf/gguf-writer.js";
import { SeededRandom } from "../../src/model/seeded-random.js";
import { useTempDir } from "../support/temp-dir.js";

const everyType: Array<[string, GgufMetadataValue]> = [
  ["t.uint8", { type: "uint8", value: 255 }],
  ["t.int8", { type: "int8", value: -128 }],
  ["t.uint16", { type: "uint16", value: 65535 }],
  ["t.int16", { type: "int16", value: -32768 }],
  ["t.uint32", { type: "uint32", value: 4294967295 }],
  ["t.int32", { type: "int32", value: -2147483648 }],
  ["t.uint64", { type: "uint64", value: 18446744073709551615n }],
  ["t.int64", { type: "int64", value: -9223372036854775808n }],
  ["t.float32", { type: "float32", value: 0.1 }],
  ["t.float64", { type: "float64", value: 0.1 }],
  ["t.bool", { type: "bool", value: true }],
  ["t.string", { type: "string", value: "héllo 😀 \u0000 end" }],
  ["t.empty_string", { type: "string", value: "" }],
  ["t.long_string", { type: "string", value: "x".repeat(10_000) }], // outgrows the encoder's first buffer
  ["a.strings", { type: "array", itemType: "string", value: ["a", "", "日本"] }],
  ["a.int32", { type: "array", itemType: "int32", value: [1, -2, 3] }],
  ["a.float32", { type: "array", itemType: "float32", value: [0.5, -1.25] }],
  ["a.uint64", { type: "array", itemType: "uint64", value: [0n, 2n ** 63n] }],
  ["a.bool", { type: "array", itemType: "bool", value: [true, false] }],
  ["a.empty", { type: "array", itemType: "string", value: [] }],
];

function randomTensor(name: string, type: "F32" | "F16", shape: number[], seed: number): GgufTensorInput {
  const size = shape.reduce((a, b) => a * b, 1);
  return { name, type, shape, data: new SeededRandom(seed).fillUniform(new Float32Array(size), 3) };
}

describe("GGUF writer and reader round trip", () => {
  const dir = useTempDir();

  it("preserves every metadata type, with 64-bit integers as bigint", async () => {
    const path = join(dir.path, "meta.gguf");
    await writeGgufFile(path, { metadata: everyType, tensors: [] });
    const file = await readGgufFile(path);
    expect(file.version).toBe(3);
    expect(file.alignment).toBe(32);
    expect([...file.metadata.keys()]).toEqual(everyType.map(([key]) => key));
    for (const [key, entry] of everyType) {
      // float32 scalars come back rounded to float32; the float32 array values above are exact.
      const expected = entry.type === "float32" ? { ...entry, value: Math.fround(entry.value as number) } : entry;
      expect(file.metadata.get(key), key).toEqual(expected);
    }
  });

  it("writes F32 and F16 tensors at aligned offsets and reads them back", async () => {
    const path = join(dir.path, "tensors.gguf");
    const tensors = [
      randomTensor("a.weight", "F32", [3], 1), // 12 bytes: the next tensor needs padding
      randomTensor("b.weight", "F16", [5, 3], 2),
      randomTensor("c.weight", "F32", [2, 3, 4, 5], 3),
    ];
    await writeGgufFile(path, { metadata: [["general.architecture", { type: "string", value: "test" }]], tensors });
    const file = await readGgufFile(path);
    expect(file.tensors.map((t) => [t.name, t.type, t.typeId, t.shape, t.byteLength])).toEqual([
      ["a.weight", "F32", 0, [3], 12],
      ["b.weight", "F16", 1, [5, 3], 30],
      ["c.weight", "F32", 0, [2, 3, 4, 5], 480],
    ]);
    expect(file.dataOffset % 32).toBe(0);
    for (const info of file.tensors) expect((info.offset - file.dataOffset) % 32).toBe(0);

    expect(await readTensorAsFloat32(path, file.tensors[0]!)).toEqual(tensors[0]!.data);
    expect(await readTensorAsFloat32(path, file.tensors[2]!)).toEqual(tensors[2]!.data);
    const halves = await readTensorAsFloat32(path, file.tensors[1]!);
    const expectedHalves = Array.from(tensors[1]!.data, (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
    expect(Array.from(halves)).toEqual(expectedHalves);
  });

  it("honours a custom alignment and records it as general.alignment", async () => {
    const path = join(dir.path, "aligned.gguf");
    await writeGgufFile(path, {
      metadata: [],
      tensors: [randomTensor("x", "F32", [3], 1), randomTensor("y", "F32", [1], 2)],
      alignment: 256,
    });
    const file = await readGgufFile(path);
    expect(file.alignment).toBe(256);
    expect(file.metadata.get("general.alignment")).toEqual({ type: "uint32", value: 256 });
    expect(file.dataOffset % 256).toBe(0);
    expect(file.tensors[1]!.offset - file.dataOffset).toBe(256);
  });

  it("takes the alignment from general.alignment when no option is given", async () => {
    const path = join(dir.path, "aligned-meta.gguf");
    const metadata: Array<[string, GgufMetadataValue]> = [["general.alignment", { type: "uint32", value: 64 }]];
    await writeGgufFile(path, { metadata, tensors: [randomTensor("x", "F32", [3], 1), randomTensor("y", "F32", [1], 2)] });
    const file = await readGgufFile(path);
    expect(file.alignment).toBe(64);
    expect(file.tensors[1]!.offset - file.dataOffset).toBe(64);
  });

  it("produces byte-identical files for identical input", async () => {
    const input = { metadata: everyType, tensors: [randomTensor("w", "F16", [8, 4], 9)] };
    await writeGgufFile(join(dir.path, "same1.gguf"), input);
    await writeGgufFile(join(dir.path, "same2.gguf"), input);
    const [one, two] = await Promise.all([readFile(join(dir.path, "same1.gguf")), readFile(join(dir.path, "same2.gguf"))]);
    expect(one.equals(two)).toBe(true);
  });

  it("refuses bad input with a GgufError and leaves no temp file behind", async () => {
    const sub = join(dir.path, "bad");
    await mkdir(sub);
    const path = join(sub, "bad.gguf");
    const bad: Array<[string, Parameters<typeof writeGgufFile>[1], RegExp]> = [
      [
        "duplicate key",
        {
          metadata: [
            ["k", { type: "bool", value: true }],
            ["k", { type: "bool", value: false }],
          ],
          tensors: [],
        },
        /duplicate metadata key/,
      ],
      ["out of range", { metadata: [["k", { type: "uint8", value: 256 }]], tensors: [] }, /out of range/],
      ["non-integer", { metadata: [["k", { type: "int32", value: 1.5 }]], tensors: [] }, /needs an integer/],
      ["wrong value kind", { metadata: [["k", { type: "string", value: 3 }]], tensors: [] }, /expected a string/],
      [
        "shape mismatch",
        { metadata: [], tensors: [{ name: "x", type: "F32", shape: [2, 2], data: new Float32Array(3) }] },
        /needs 4 values/,
      ],
      [
        "duplicate tensor",
        { metadata: [], tensors: [randomTensor("x", "F32", [1], 1), randomTensor("x", "F32", [1], 1)] },
        /duplicate tensor/,
      ],
      ["long name", { metadata: [], tensors: [randomTensor("n".repeat(64), "F32", [1], 1)] }, /must be 1-63 bytes/],
      ["alignment", { metadata: [], tensors: [], alignment: 24 }, /power of two/],
      [
        "alignment conflict",
        { metadata: [["general.alignment", { type: "uint32", value: 64 }]], tensors: [], alignment: 32 },
        /contradicts/,
      ],
    ];
    for (const [label, input, message] of bad) {
      const error = await writeGgufFile(path, input).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, label).toBeInstanceOf(GgufError);
      expect((error as Error).message, label).toMatch(message);
    }
    expect(await readdir(sub)).toEqual([]);
  });
});
