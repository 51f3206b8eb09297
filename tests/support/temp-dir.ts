import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";

/** A fresh directory under the OS temp dir; the caller removes it (see `useTempDir` for suites). */
export function createTempDir(prefix = "lori-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export function removeTempDir(path: string): Promise<void> {
  return rm(path, { recursive: true, force: true });
}

/**
 * A temp directory for the enclosing describe block: created before its tests, removed after them.
 * Read `.path` inside tests or hooks (it is empty at collection time).
 */
export function useTempDir(prefix?: string): { path: string } {
  const handle = { path: "" };
  beforeAll(async () => {
    handle.path = await createTempDir(prefix);
  });
  afterAll(async () => {
    if (handle.path) await removeTempDir(handle.path);
  });
  return handle;
}
