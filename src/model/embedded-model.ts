import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { readGgufFile } from "../gguf/gguf-reader.js";
import { EMBEDDED_SHAPE, createTinyModel } from "./tiny-model.js";

export const EMBEDDED_MODEL_FILE = "lori-tiny.gguf";

/**
 * Path of `<modelsDir>/lori-tiny.gguf`, generating it on first use. Generation is deterministic and the
 * write is atomic (temp file + rename), so processes starting together may all generate it: each rename
 * installs an identical, complete file and nobody ever reads a partial one. An existing file is reused
 * when its header parses and its tensor data is all present; anything else is regenerated.
 */
export async function ensureEmbeddedModel(modelsDir: string): Promise<string> {
  const path = join(modelsDir, EMBEDDED_MODEL_FILE);
  if (await isUsableLlamaGguf(path)) return path;
  await mkdir(modelsDir, { recursive: true });
  await createTinyModel({ out: path, ...EMBEDDED_SHAPE, seed: 0, name: "lori-tiny" });
  return path;
}

async function isUsableLlamaGguf(path: string): Promise<boolean> {
  const exists = await stat(path).then(
    (info) => info.isFile(),
    () => false,
  );
  if (!exists) return false;
  try {
    // readGgufFile checks that every tensor's bytes lie within the file, which catches truncation.
    const file = await readGgufFile(path);
    return file.metadata.get("general.architecture")?.value === "llama";
  } catch {
    return false;
  }
}
