import { cp, symlink } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { silentLogger } from "../../src/util/logger.js";
import { useTempDir } from "../support/temp-dir.js";
import { replaceWith, tinyBase, writeGoodAdapter } from "./store-fixtures.js";

/** Resolves with the promise's value, or rejects when it takes longer than `ms` (the wedge symptom). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (wedged)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Issue 10, defect 2: `adapter_model.safetensors -> /dev/zero` made the poller hash forever; after that merge
 * and delete never answered. A FIFO blocks an open() until a writer appears. Neither may stall a scan now.
 */
describe("a non-regular file cannot wedge the registry", () => {
  const tmp = useTempDir("lori-store-wedge-");

  it("scans past /dev/zero and a FIFO, and installs, removals and rescans keep answering", async () => {
    const base = await tinyBase(tmp.path);
    const adaptersDir = path.join(tmp.path, "adapters");
    await writeGoodAdapter(path.join(adaptersDir, "good"), base);
    await cp(path.join(adaptersDir, "good"), path.join(adaptersDir, "zero"), { recursive: true });
    await replaceWith(path.join(adaptersDir, "zero"), WEIGHTS_FILE, (target) => symlink("/dev/zero", target));
    await cp(path.join(adaptersDir, "good"), path.join(adaptersDir, "pipe"), { recursive: true });
    await replaceWith(path.join(adaptersDir, "pipe"), WEIGHTS_FILE, async (target) => {
      execFileSync("mkfifo", [target]);
    });

    const registry = new AdapterRegistry(adaptersDir, silentLogger, { bases: [base] });
    try {
      await within(registry.start(20), 5000, "the first scan");
      expect(registry.list().map((e) => e.name)).toEqual(["good"]);
      // What merge and delete wait on: a rescan, after the poller has run a few times.
      await new Promise((r) => setTimeout(r, 100));
      await within(registry.refresh(), 5000, "a rescan");
      await writeGoodAdapter(path.join(tmp.path, "staging"), base, { seed: 9 });
      await cp(path.join(tmp.path, "staging"), path.join(adaptersDir, "merged"), { recursive: true });
      await within(registry.refresh(), 5000, "a rescan after a new adapter");
      expect(registry.list().map((e) => e.name)).toEqual(["good", "merged"]);
      await within(registry.remove("merged"), 5000, "a removal");
      expect(registry.list().map((e) => e.name)).toEqual(["good"]);
    } finally {
      registry.close();
    }
  }, 30_000);
});
