import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Fixtures live beside the project, in ../shared/fixtures, never inside it: a user's fresh clone has
// none, so tests must skip (not fail) when they are absent.
const sharedDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared");
const fixturesDir = join(sharedDir, "fixtures");

let digests: Map<string, string> | undefined;
const verified = new Set<string>();

/**
 * Absolute path of `fixtures/<relativePath>` (e.g. "models/stories260K.gguf"), or null when the shared
 * fixtures are not present. Throws when the file is listed in SHA256SUMS with a different digest: a
 * corrupt fixture must fail loudly rather than produce confusing test results.
 */
export function fixturePath(relativePath: string): string | null {
  const path = join(fixturesDir, relativePath);
  if (!existsSync(path)) return null;
  if (!verified.has(path)) {
    const expected = fixtureDigests().get(`fixtures/${relativePath}`);
    if (expected) {
      const actual = createHash("sha256").update(readFileSync(path)).digest("hex");
      if (actual !== expected) throw new Error(`fixture ${relativePath} is corrupt: sha256 ${actual}, expected ${expected}`);
    }
    verified.add(path);
  }
  return path;
}

/** A `describe.skipIf` reason-friendly message for a missing fixture. */
export function missingFixtureMessage(relativePath: string): string {
  return `skipped: fixture ${relativePath} not found under ${fixturesDir} (it ships beside the repo, not in it)`;
}

function fixtureDigests(): Map<string, string> {
  if (digests) return digests;
  digests = new Map();
  const sumsPath = join(fixturesDir, "SHA256SUMS");
  if (existsSync(sumsPath)) {
    for (const line of readFileSync(sumsPath, "utf8").split("\n")) {
      const match = /^([0-9a-f]{64})\s+\*?(.+)$/.exec(line.trim());
      if (match) digests.set(match[2]!, match[1]!);
    }
  }
  return digests;
}
