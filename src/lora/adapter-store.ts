import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Adapter } from "./adapter.js";
import { CONFIG_FILE, readAdapterDir, validateAdapterName } from "./adapter-io.js";
import { LoraError } from "./errors.js";

/**
 * The adapters directory as the CLI sees it: `<adapters-dir>/<name>/` holds one adapter. Names are validated
 * before they touch the file system, so `../x` or `a/b` never resolve outside the directory.
 */

/** Default `--adapters-dir`, relative to the working directory. */
export const DEFAULT_ADAPTERS_DIR = "adapters";

export async function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** `<adaptersDir>/<name>` after validating the name. */
export function storedAdapterDir(adaptersDir: string, name: string): string {
  validateAdapterName(name);
  return join(adaptersDir, name);
}

/**
 * A stored adapter's directory from a NAME (under `adaptersDir`) or, for references that are not names or not
 * stored there, a PATH to an adapter directory.
 */
export async function resolveAdapterRef(ref: string, adaptersDir: string): Promise<string> {
  let nameError: unknown;
  try {
    const dir = storedAdapterDir(adaptersDir, ref);
    if (await pathExists(join(dir, CONFIG_FILE))) return dir;
  } catch (error) {
    nameError = error;
  }
  if (await pathExists(join(ref, CONFIG_FILE))) return ref;
  if (nameError && !/[\\/]/.test(ref)) throw nameError;
  throw new LoraError("ADAPTER_BAD_NAME", `no adapter '${ref}' in ${adaptersDir} (and no adapter directory at that path)`);
}

export async function readAdapterRef(ref: string, adaptersDir: string): Promise<{ dir: string; adapter: Adapter }> {
  const dir = await resolveAdapterRef(ref, adaptersDir);
  return { dir, adapter: await readAdapterDir(dir) };
}

/** The first line of an error's message: what a CLI prints. */
export function oneLineMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}
