import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { rewriteGgufMetadata } from "../../src/gguf/gguf-metadata-rewrite.js";
import { readGgufFile, readTensorAsFloat32 } from "../../src/gguf/gguf-reader.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";

async function tensorHashes(path: string): Promise<Map<string, string>> {
  const file = await readGgufFile(path);
  const bytes = await readFile(path);
  return new Map(
    file.tensors.map((t) => [
      t.name,
      createHash("sha256")
        .update(bytes.subarray(t.offset, t.offset + t.byteLength))
        .digest("hex"),
    ]),
  );
}

describe("rewriteGgufMetadata", () => {
  const tmp = useTempDir();

  it("changes only the metadata: every tensor's bytes and values stay identical as the header grows", async () => {
    const source = join(tmp.path, "source.gguf");
    await createTinyModel({ out: source, seed: 5 });
    for (const extra of [1, 31, 33, 5000]) {
      const out = join(tmp.path, `rewritten-${extra}.gguf`);
      await rewriteGgufMetadata(source, out, (metadata) => [
        ...metadata.map(([key, value]): [string, typeof value] =>
          key === "general.name" ? [key, { type: "string", value: "renamed" }] : [key, value],
        ),
        ["lori.note", { type: "string", value: "x".repeat(extra) }],
      ]);
      const before = await readGgufFile(source);
      const after = await readGgufFile(out);
      expect(after.metadata.get("general.name")?.value).toBe("renamed");
      expect(after.metadata.get("lori.note")?.value).toBe("x".repeat(extra));
      expect(after.dataOffset % after.alignment).toBe(0);
      expect(after.dataOffset).toBeGreaterThan(before.dataOffset - 32);
      expect(after.tensors.map(({ name, shape, type }) => ({ name, shape, type }))).toEqual(
        before.tensors.map(({ name, shape, type }) => ({ name, shape, type })),
      );
      expect(await tensorHashes(out)).toEqual(await tensorHashes(source));
      const last = before.tensors.at(-1)!;
      expect(await readTensorAsFloat32(out, after.tensors.at(-1)!)).toEqual(await readTensorAsFloat32(source, last));
    }
  });

  it("refuses to change the alignment", async () => {
    const source = join(tmp.path, "source.gguf");
    await expect(
      rewriteGgufMetadata(source, join(tmp.path, "bad.gguf"), (m) => [...m, ["general.alignment", { type: "uint32", value: 64 }]]),
    ).rejects.toThrow(/alignment/);
  });
});
