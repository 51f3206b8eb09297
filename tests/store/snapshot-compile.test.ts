import { cp, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { AdapterSetCompiler } from "../../src/engine/adapters/adapter-set-compiler.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { silentLogger } from "../../src/util/logger.js";
import { useTempDir } from "../support/temp-dir.js";
import { allModules, tinyBase, writeGoodAdapter, writeModules } from "./store-fixtures.js";

/**
 * Issue 10, item 12: the compile cache was keyed by the registry's hash but compiled from whatever was on disk
 * at bind time, so a replace between the scan and the bind stored v2's tensors under v1's name, for good.
 * Every `<hash>.gguf` must be the compile of exactly the adapter bytes that hash names.
 */
describe("the compiler compiles exactly the bytes the registry hashed", () => {
  const tmp = useTempDir("lori-store-snapshot-");

  it("a replace between scan and bind never poisons the cache", async () => {
    const base = await tinyBase(tmp.path);
    const adaptersDir = path.join(tmp.path, "adapters");
    await writeGoodAdapter(path.join(adaptersDir, "live"), base, { seed: 1 });
    await cp(path.join(adaptersDir, "live"), path.join(tmp.path, "v1"), { recursive: true });
    await writeGoodAdapter(path.join(tmp.path, "v2"), base, { seed: 2 });

    const registry = new AdapterRegistry(adaptersDir, silentLogger, { bases: [base] });
    await registry.start(0); // no polling: the registry still holds v1 when the files change
    const v1Hash = registry.get("live")!.hash;
    const cacheRoot = path.join(adaptersDir, ".compiled");
    const compiler = new AdapterSetCompiler(registry, base.header, base.fingerprint, cacheRoot);
    const set = compiler.resolve([{ name: "live", weight: 1 }]);

    // Replaced on disk (atomically, as `writeAdapterDir` does) after the request resolved its set.
    await writeModules(path.join(adaptersDir, "live"), allModules(base, { seed: 2 }), base.fingerprint, true);
    const { binding } = await compiler.bind(set);

    const expected = async (version: string) => {
      const out = path.join(tmp.path, `expected-${version}.gguf`);
      await compileGgufLora(await readAdapterDir(path.join(tmp.path, version)), base.header, out);
      return readFile(out);
    };
    const compiled = new Map<string, Buffer>();
    for (const sub of await readdir(cacheRoot, { withFileTypes: true })) {
      if (!sub.isDirectory()) continue;
      for (const f of await readdir(path.join(cacheRoot, sub.name)))
        if (f.endsWith(".gguf")) compiled.set(f, await readFile(path.join(cacheRoot, sub.name, f)));
    }
    const underV1 = compiled.get(`${v1Hash}.gguf`);
    if (underV1) expect(underV1.equals(await expected("v1")), "the file named by v1's hash holds v1").toBe(true);
    // The request got the adapter as it is now, under its own hash.
    const v2Hash = registry.get("live")!.hash;
    expect(v2Hash).not.toBe(v1Hash);
    expect(path.basename(binding.loras[0]!.filePath)).toBe(`${v2Hash}.gguf`);
    expect((await readFile(binding.loras[0]!.filePath)).equals(await expected("v2"))).toBe(true);
    registry.close();
  });

  it("a merge input replaced since the last scan is read as it is now, never as a mix", async () => {
    const base = await tinyBase(tmp.path, "base2.gguf");
    const adaptersDir = path.join(tmp.path, "adapters2");
    await writeGoodAdapter(path.join(adaptersDir, "input"), base, { seed: 1 });
    const registry = new AdapterRegistry(adaptersDir, silentLogger, { bases: [base] });
    await registry.start(0);
    const before = registry.get("input")!;
    await writeModules(path.join(adaptersDir, "input"), allModules(base, { seed: 7 }), base.fingerprint, true);
    await expect(registry.snapshot(before)).rejects.toMatchObject({ name: "AdapterChangedError", kind: "unavailable" });
    const current = await registry.readCurrent("input");
    expect(current!.entry.hash).not.toBe(before.hash);
    const expected = await readAdapterDir(path.join(adaptersDir, "input"));
    expect(current!.adapter.modules.map((m) => Array.from(m.b.slice(0, 4)))).toEqual(
      expected.modules.map((m) => Array.from(m.b.slice(0, 4))),
    );
    registry.close();
  });
});
