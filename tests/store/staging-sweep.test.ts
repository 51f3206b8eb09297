import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { ABANDONED_STAGING_AGE_MS } from "../../src/engine/adapters/staging-sweep.js";
import { silentLogger } from "../../src/util/logger.js";

// A replica killed in the middle of a merge or an upload leaves its staging directory in the shared store.
// The next registry to start removes those old enough that no running write can still own them.

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function staging(name: string, ageMs: number): void {
  const full = path.join(dir, name);
  mkdirSync(full);
  writeFileSync(path.join(full, "adapter_model.safetensors"), "half-written");
  const when = (Date.now() - ageMs) / 1000;
  utimesSync(full, when, when);
}

describe("abandoned staging directories", () => {
  it("are removed at start once older than the age limit; young ones and other dot-dirs stay", async () => {
    dir = mkdtempSync(path.join(tmpdir(), "lori-sweep-"));
    const old = ABANDONED_STAGING_AGE_MS + 60_000;
    staging(".merge-mixed-0123456789ab", old);
    staging(".upload-math-ba9876543210", old);
    staging(".deleted-code-0a1b2c3d", old);
    staging(".merge-fresh-aaaaaaaaaaaa", 1000); // a write still running on another replica
    staging(".compiled", old);
    staging(".train", old);
    staging(".merge-not-a-staging-name", old);
    const registry = new AdapterRegistry(dir, silentLogger);
    await registry.start(0);
    registry.close();
    expect(readdirSync(dir).sort()).toEqual([".compiled", ".merge-fresh-aaaaaaaaaaaa", ".merge-not-a-staging-name", ".train"]);
  });
});
