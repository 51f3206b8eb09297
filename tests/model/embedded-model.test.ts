import { readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { DEMO_MODEL_PATH, EMBEDDED_MODEL_FILE, ensureEmbeddedModel, resolveDefaultModel } from "../../src/model/embedded-model.js";
import { useTempDir } from "../support/temp-dir.js";

describe("ensureEmbeddedModel", () => {
  const dir = useTempDir();

  it("creates models/lori-tiny.gguf (and the folder) on first use, then reuses it", async () => {
    const modelsDir = join(dir.path, "first", "models");
    const path = await ensureEmbeddedModel(modelsDir);
    expect(path).toBe(join(modelsDir, EMBEDDED_MODEL_FILE));
    const { metadata } = await readGgufFile(path);
    expect(metadata.get("general.name")?.value).toBe("lori-tiny");
    const before = await stat(path);
    expect(await ensureEmbeddedModel(modelsDir)).toBe(path);
    expect((await stat(path)).mtimeMs).toBe(before.mtimeMs);
  });

  it("gives concurrent callers one complete, identical file and leaves no temp files", async () => {
    const modelsDir = join(dir.path, "concurrent");
    const paths = await Promise.all(Array.from({ length: 6 }, () => ensureEmbeddedModel(modelsDir)));
    expect(new Set(paths).size).toBe(1);
    expect(await readdir(modelsDir)).toEqual([EMBEDDED_MODEL_FILE]);
    await expect(readGgufFile(paths[0]!)).resolves.toBeDefined();
  });

  it("regenerates a truncated or foreign file", async () => {
    const modelsDir = join(dir.path, "damaged");
    const path = await ensureEmbeddedModel(modelsDir);
    const good = await readFile(path);
    await truncate(path, 1000);
    await ensureEmbeddedModel(modelsDir);
    expect((await readFile(path)).equals(good)).toBe(true);
    await writeFile(path, "not a model");
    await ensureEmbeddedModel(modelsDir);
    expect((await readFile(path)).equals(good)).toBe(true);
  });
});

describe("resolveDefaultModel", () => {
  const dir = useTempDir();

  it("serves the demo model without a warning, and warns loudly when it falls back to the random model", async () => {
    const demo = await resolveDefaultModel(join(dir.path, "models"));
    expect(demo).toEqual({ id: "lori-demo", path: DEMO_MODEL_PATH });
    const fallback = await resolveDefaultModel(join(dir.path, "models"), join(dir.path, "missing", "lori-demo.gguf"));
    expect(fallback.id).toBe("lori-tiny");
    expect(fallback.path).toBe(join(dir.path, "models", EMBEDDED_MODEL_FILE));
    expect(fallback.fallbackWarning).toMatch(/lori-demo\.gguf is missing.*RANDOM fallback model lori-tiny.*--model/);
  });
});
