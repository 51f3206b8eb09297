import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";

/**
 * Staging directories that writes to the adapter store leave behind when their process dies mid-write
 * (`.merge-<name>-<hex12>`, `.upload-<name>-<hex12>`, named in routes/adapters.ts) and trash a delete had not
 * finished removing (`.deleted-<name>-<hex8>`, adapter-registry.ts). The poller never lists them,
 * but they hold a whole adapter each. Replicas share the store, so a young one may belong to a write still
 * running elsewhere: only those untouched for an hour, far longer than any merge or upload takes, are removed.
 */
const STAGING_NAME = /^\.(?:(?:merge|upload)-.+-[0-9a-f]{12}|deleted-.+-[0-9a-f]{8})$/;
export const ABANDONED_STAGING_AGE_MS = 60 * 60 * 1000;

/** Removes abandoned staging directories under `dir`; returns their names. Errors leave a directory in place. */
export async function sweepAbandonedStaging(dir: string, now = Date.now(), maxAgeMs = ABANDONED_STAGING_AGE_MS): Promise<string[]> {
  const removed: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isDirectory() || !STAGING_NAME.test(entry.name)) continue;
    const full = path.join(dir, entry.name);
    try {
      if (now - (await stat(full)).mtimeMs < maxAgeMs) continue;
      await rm(full, { recursive: true, force: true });
      removed.push(entry.name);
    } catch {
      // Gone already (another replica swept it) or unreadable: nothing to do here.
    }
  }
  return removed.sort();
}
