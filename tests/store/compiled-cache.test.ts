import { readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { CompiledCache } from "../../src/engine/adapters/compiled-cache.js";
import { silentLogger } from "../../src/util/logger.js";
import { createTempDir, removeTempDir } from "../support/temp-dir.js";
import { allModules, tinyBase, writeGoodAdapter, writeModules } from "./store-fixtures.js";

/**
 * The compiled cache on real files, with a builder that writes known bytes (the compile itself is covered by
 * the snapshot and HTTP tests). Issue 10: defect 1 (disk growth, stale files of replaced adapters), defect 5
 * (a corrupt compiled file after a restart).
 */

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withCache<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const dir = await createTempDir("lori-store-cache-");
  try {
    return await fn(path.join(dir, ".compiled"));
  } finally {
    await removeTempDir(dir);
  }
}

/** A builder that writes `size` bytes of `fill` and counts its calls per file. */
function builder(size = 1000) {
  const calls = new Map<string, number>();
  const build = async (filePath: string) => {
    calls.set(path.basename(filePath), (calls.get(path.basename(filePath)) ?? 0) + 1);
    await writeFile(filePath, Buffer.alloc(size, path.basename(filePath).charCodeAt(0)));
  };
  return { build, calls };
}

async function filesIn(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of await readdir(root, { withFileTypes: true })) {
    if (sub.isDirectory()) for (const f of await readdir(path.join(root, sub.name))) out.push(f);
  }
  return out.sort();
}

describe("compiled cache (.compiled/)", () => {
  it("keeps the total within the budget, evicting the least recently used file", () =>
    withCache(async (root) => {
      const cache = new CompiledCache(root, { budgetBytes: 3000 });
      const { build } = builder();
      const file = (name: string) => path.join(root, "base", name);
      for (const name of ["a.gguf", "b.gguf", "c.gguf"]) {
        (await cache.ensure(file(name), [name], build))(); // a request used it and ended
        await pause(5);
      }
      (await cache.ensure(file("a.gguf"), ["a.gguf"], build))(); // a is now more recent than b
      await pause(5);
      (await cache.ensure(file("d.gguf"), ["d.gguf"], build))();
      expect(await filesIn(root)).toEqual(["a.gguf", "c.gguf", "d.gguf"]);
      expect({ bytes: cache.bytes, files: cache.files, evictions: cache.evictions }).toEqual({ bytes: 3000, files: 3, evictions: 1 });
      // 300 distinct sets (the defect-1 reproduction) never grow the directory past the budget.
      for (let i = 0; i < 300; i++) {
        (await cache.ensure(file(`set-${i}.gguf`), [`set-${i}`], build))();
        const onDisk = (await filesIn(root)).length;
        expect(onDisk).toBeLessThanOrEqual(3);
      }
      expect(cache.evictions).toBe(301);
    }));

  it("never evicts a file a lane holds, nor one a request has pinned, and evicts it once released", () =>
    withCache(async (root) => {
      const held = new Set<string>();
      const cache = new CompiledCache(root, { budgetBytes: 2000, inUse: (p) => held.has(path.basename(p)) });
      const { build } = builder();
      const file = (name: string) => path.join(root, "base", name);
      (await cache.ensure(file("a.gguf"), ["a"], build))();
      await pause(5);
      (await cache.ensure(file("b.gguf"), ["b"], build))();
      held.add("a.gguf");
      await pause(5);
      (await cache.ensure(file("c.gguf"), ["c"], build))();
      expect(await filesIn(root)).toEqual(["a.gguf", "c.gguf"]);
      // Everything else held: over budget until they are released, never a deleted file under a lane.
      held.add("c.gguf");
      (await cache.ensure(file("d.gguf"), ["d"], build))();
      expect(await filesIn(root)).toEqual(["a.gguf", "c.gguf", "d.gguf"]);

      // A request pins its file from compile to the end of its generation, however long it waits for a lane.
      const pinned = new CompiledCache(path.join(root, "..", "pinned"), { budgetBytes: 1000 });
      const at = (name: string) => path.join(pinned.root, "base", name);
      const releaseX = await pinned.ensure(at("x.gguf"), ["x"], build);
      const releaseY = await pinned.ensure(at("y.gguf"), ["y"], build);
      expect(await filesIn(pinned.root)).toEqual(["x.gguf", "y.gguf"]);
      expect(pinned.pinnedFiles).toBe(2);
      releaseX();
      releaseX(); // idempotent: y's pin is untouched
      await pause(300);
      expect(await filesIn(pinned.root)).toEqual(["y.gguf"]);
      releaseY();
      (await pinned.ensure(at("z.gguf"), ["z"], build))();
      expect(await filesIn(pinned.root)).toEqual(["z.gguf"]);
      expect(pinned.pinnedFiles).toBe(0);
      pinned.close();
    }));

  it("recompiles a truncated or altered file after a restart instead of serving it", () =>
    withCache(async (root) => {
      const { build, calls } = builder();
      const file = path.join(root, "base", "a.gguf");
      await new CompiledCache(root, { budgetBytes: 1e9 }).ensure(file, ["a"], build);
      expect(calls.get("a.gguf")).toBe(1);

      await truncate(file, 10);
      const restarted = new CompiledCache(root, { budgetBytes: 1e9 });
      await restarted.ensure(file, ["a"], build);
      expect(calls.get("a.gguf")).toBe(2);
      expect((await stat(file)).size).toBe(1000);

      const bytes = await readFile(file);
      bytes[500] = bytes[500]! ^ 0xff; // same size, different content
      await writeFile(file, bytes);
      const again = new CompiledCache(root, { budgetBytes: 1e9 });
      await again.ensure(file, ["a"], build);
      expect(calls.get("a.gguf")).toBe(3);
      // Verified once per start: later uses do not re-hash or rebuild.
      await again.ensure(file, ["a"], build);
      expect(calls.get("a.gguf")).toBe(3);
    }));

  it("deletes files the manifest does not know at start (they cannot be verified)", () =>
    withCache(async (root) => {
      const { build } = builder();
      const cache = new CompiledCache(root, { budgetBytes: 1e9 });
      await cache.ensure(path.join(root, "base", "a.gguf"), ["a"], build);
      await writeFile(path.join(root, "base", "stray.gguf"), "x");
      await writeFile(path.join(root, "base", ".a.gguf.123.tmp"), "partial");
      const restarted = new CompiledCache(root, { budgetBytes: 1e9 });
      await restarted.ensure(path.join(root, "base", "b.gguf"), ["b"], build);
      expect(await filesIn(root)).toEqual(["a.gguf", "b.gguf"]);
      expect(restarted.files).toBe(2);
    }));

  it("prunes the compiled files of a replaced or deleted adapter at once, unless another adapter has that content", async () => {
    const dir = await createTempDir("lori-store-prune-");
    try {
      const base = await tinyBase(dir);
      const adaptersDir = path.join(dir, "adapters");
      await writeGoodAdapter(path.join(adaptersDir, "math"), base, { seed: 1 });
      await writeGoodAdapter(path.join(adaptersDir, "code"), base, { seed: 2 });
      const registry = new AdapterRegistry(adaptersDir, silentLogger, { bases: [base] });
      await registry.start(0);
      await registry.registerPath("alias", path.join(adaptersDir, "code"));
      const cache = new CompiledCache(path.join(adaptersDir, ".compiled"), { budgetBytes: 1e9 });
      cache.followRegistry(registry);
      const { build } = builder(100);
      const math = registry.get("math")!.hash;
      const code = registry.get("code")!.hash;
      const file = (name: string) => path.join(cache.root, "base", name);
      (await cache.ensure(file(`${math}.gguf`), [math], build))();
      (await cache.ensure(file("set-math-code.gguf"), [math, code], build))();
      (await cache.ensure(file(`${code}.gguf`), [code], build))();

      // Replace math: its own file and every set containing it go; code's stays.
      await writeModules(path.join(adaptersDir, "math"), allModules(base, { seed: 3 }), base.fingerprint, true);
      await registry.refresh();
      await pause(50);
      expect(await filesIn(cache.root)).toEqual([`${code}.gguf`]);

      // Deleting code keeps its file while 'alias' still has the same content; deleting the alias prunes it.
      await registry.remove("code");
      await pause(50);
      expect(await filesIn(cache.root)).toEqual([`${code}.gguf`]);
      await registry.remove("alias");
      await pause(50);
      expect(await filesIn(cache.root)).toEqual([]);
      registry.close();
    } finally {
      await removeTempDir(dir);
    }
  });

  it("keeps a pruned file while a request has it pinned, and deletes it once released", () =>
    withCache(async (root) => {
      const cache = new CompiledCache(root, { budgetBytes: 1e9 });
      const { build } = builder();
      const release = await cache.ensure(path.join(root, "base", "old.gguf"), ["old-hash"], build);
      await cache.pruneAdapter("old-hash");
      await pause(300);
      expect(await filesIn(root)).toEqual(["old.gguf"]); // its request may still be queued for a lane
      release();
      await pause(300);
      expect(await filesIn(root)).toEqual([]);
      cache.close();
    }));
});
