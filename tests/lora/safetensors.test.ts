import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoraError } from "../../src/lora/errors.js";
import {
  planSafetensors,
  SafetensorsFile,
  SAFETENSORS_DTYPE_BYTES,
  writeSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensorData,
} from "../../src/lora/safetensors.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lori-safetensors-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
const nextPath = () => join(dir, `t${counter++}.safetensors`);

/** Builds a file from a literal header and data, bypassing the writer's checks. */
async function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Promise<string> {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  const path = nextPath();
  await writeFile(path, Buffer.concat([prefix, json, data]));
  return path;
}

async function expectCode(path: string, code: string, message: RegExp): Promise<void> {
  const error = await SafetensorsFile.open(path).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LoraError);
  expect((error as LoraError).code).toBe(code);
  expect((error as LoraError).message).toMatch(message);
}

function randomTensor(name: string, dtype: SafetensorsDtype): SafetensorsTensorData {
  const rank = Math.floor(Math.random() * 4);
  const shape = Array.from({ length: rank }, () => Math.floor(Math.random() * 5));
  const n = shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype];
  const data = new Uint8Array(n).map(() => Math.floor(Math.random() * 256));
  return { name, dtype, shape, data };
}

describe("safetensors writer and reader", () => {
  it("round-trips random tensors of every dtype with metadata, byte for byte", async () => {
    const dtypes = Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDtype[];
    for (let trial = 0; trial < 20; trial++) {
      const tensors = Array.from({ length: 1 + Math.floor(Math.random() * 6) }, (_, i) =>
        randomTensor(`layer.${i}.w${trial}`, dtypes[Math.floor(Math.random() * dtypes.length)]!),
      );
      const metadata = { format: "pt", note: `trial ${trial} ✓` };
      const path = nextPath();
      await writeSafetensors(path, tensors, metadata);
      const file = await SafetensorsFile.open(path);
      try {
        expect(file.metadata).toEqual(metadata);
        expect([...file.tensors.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
        for (const t of tensors) {
          expect(file.info(t.name).shape).toEqual(t.shape);
          expect(file.info(t.name).dtype).toBe(t.dtype);
          expect(Buffer.from(await file.readBytes(t.name)).equals(Buffer.from(t.data as Uint8Array))).toBe(true);
        }
      } finally {
        await file.close();
      }
    }
  });

  it("pads the JSON header with spaces so data starts 8-byte aligned, and plans the exact file size", async () => {
    const tensors = [{ name: "a", dtype: "F32" as const, shape: [3], data: new Float32Array([1, 2, 3]) }];
    const path = nextPath();
    await writeSafetensors(path, tensors);
    const bytes = await readFile(path);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    expect(JSON.parse(bytes.subarray(8, 8 + headerLength).toString())).toHaveProperty("a");
    expect(bytes.length).toBe(planSafetensors(tensors).fileBytes);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + headerLength))).toEqual(new Float32Array([1, 2, 3]));
  });

  it("leaves no temp file behind and replaces the target atomically", async () => {
    const sub = await mkdtemp(join(dir, "atomic-"));
    const path = join(sub, "x.safetensors");
    await writeSafetensors(path, [{ name: "a", dtype: "U8", shape: [1], data: new Uint8Array([1]) }]);
    await writeSafetensors(path, [{ name: "b", dtype: "U8", shape: [2], data: new Uint8Array([2, 3]) }]);
    expect(await readdir(sub)).toEqual(["x.safetensors"]);
    const file = await SafetensorsFile.open(path);
    expect([...file.tensors.keys()]).toEqual(["b"]);
    await file.close();
  });

  it("refuses to write data whose length disagrees with shape and dtype, or duplicate names", async () => {
    await expect(writeSafetensors(nextPath(), [{ name: "a", dtype: "F32", shape: [2], data: new Float32Array(3) }])).rejects.toThrow(
      /need 8/,
    );
    const t = { name: "a", dtype: "U8" as const, shape: [1], data: new Uint8Array(1) };
    await expect(writeSafetensors(nextPath(), [t, t])).rejects.toThrow(/duplicate/);
  });

  it("reads one tensor without touching the others (positional reads)", async () => {
    const big = new Float32Array(1 << 16).map((_, i) => i);
    const path = nextPath();
    await writeSafetensors(path, [
      { name: "big", dtype: "F32", shape: [1 << 16], data: big },
      { name: "small", dtype: "I64", shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) },
    ]);
    const file = await SafetensorsFile.open(path);
    const small = await file.readBytes("small");
    expect([...new BigInt64Array(small.buffer, small.byteOffset, 2)]).toEqual([-1n, 2n ** 40n]);
    await expect(file.readBytes("nope")).rejects.toThrow(/no tensor named 'nope'/);
    await file.close();
  });
});

describe("safetensors reader rejects malformed files", () => {
  const ok = (dtype: string, shape: number[], offsets: [number, number]) => ({ dtype, shape, data_offsets: offsets });

  it("a file shorter than the 8-byte length prefix", async () => {
    const path = nextPath();
    await writeFile(path, Buffer.from([1, 2, 3]));
    await expectCode(path, "SAFETENSORS_TRUNCATED", /shorter than the 8-byte/);
  });

  it("a header length over 100 MB", async () => {
    await expectCode(await rawFile({}, undefined, 200_000_000n), "SAFETENSORS_HEADER_TOO_LARGE", /exceeds/);
  });

  it("a header that runs past the end of the file", async () => {
    await expectCode(await rawFile({}, undefined, 4096n), "SAFETENSORS_TRUNCATED", /header claims 4096/);
  });

  it("a header that is not JSON", async () => {
    await expectCode(await rawFile("{not json"), "SAFETENSORS_HEADER_NOT_JSON", /not valid JSON/);
    await expectCode(await rawFile("[1,2]"), "SAFETENSORS_HEADER_NOT_JSON", /not a JSON object/);
  });

  it("an unknown dtype", async () => {
    await expectCode(await rawFile({ a: ok("Q4_K", [1], [0, 1]) }, new Uint8Array(1)), "SAFETENSORS_UNKNOWN_DTYPE", /'a'.*Q4_K/);
  });

  it("offsets beyond the data section (a truncated data section)", async () => {
    await expectCode(
      await rawFile({ a: ok("F32", [4], [0, 16]) }, new Uint8Array(8)),
      "SAFETENSORS_OFFSETS_OUT_OF_RANGE",
      /exceed the 8-byte/,
    );
  });

  it("a byte size that is not product(shape) * dtype size", async () => {
    await expectCode(await rawFile({ a: ok("F32", [3], [0, 8]) }, new Uint8Array(8)), "SAFETENSORS_SIZE_MISMATCH", /F32\[3\] needs 12/);
  });

  it("overlapping tensors", async () => {
    const header = { a: ok("U8", [4], [0, 4]), b: ok("U8", [4], [2, 6]) };
    await expectCode(await rawFile(header, new Uint8Array(6)), "SAFETENSORS_OVERLAP", /'b' overlaps 'a'/);
  });

  it("holes between tensors and unreferenced trailing bytes", async () => {
    const gap = { a: ok("U8", [2], [0, 2]), b: ok("U8", [2], [4, 6]) };
    await expectCode(await rawFile(gap, new Uint8Array(6)), "SAFETENSORS_GAP", /2 unreferenced bytes before tensor 'b'/);
    await expectCode(await rawFile({ a: ok("U8", [2], [0, 2]) }, new Uint8Array(5)), "SAFETENSORS_GAP", /3 unreferenced bytes at the end/);
  });

  it("malformed entries and metadata", async () => {
    await expectCode(await rawFile({ a: ok("U8", [-1], [0, 0]) }), "SAFETENSORS_BAD_ENTRY", /invalid shape/);
    await expectCode(await rawFile({ a: ok("U8", [1], [1, 0]) }, new Uint8Array(1)), "SAFETENSORS_BAD_ENTRY", /invalid data_offsets/);
    await expectCode(await rawFile({ __metadata__: { n: 1 } }), "SAFETENSORS_BAD_ENTRY", /'n' is not a string/);
  });

  it("accepts zero-sized tensors sharing an offset", async () => {
    const path = await rawFile({ a: ok("F32", [0], [0, 0]), b: ok("F32", [0, 3], [0, 0]), c: ok("U8", [1], [0, 1]) }, new Uint8Array(1));
    const file = await SafetensorsFile.open(path);
    expect((await file.readBytes("a")).length).toBe(0);
    await file.close();
  });
});
