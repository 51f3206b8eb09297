import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readGgufFile } from "../gguf/gguf-reader.js";
import { EMBEDDED_SHAPE, createTinyModel } from "./tiny-model.js";

export const EMBEDDED_MODEL_FILE = "lori-tiny.gguf";

/**
 * The pretrained demo model shipped in the package's models/ folder (`npm run demo:build`), served by default
 * with the demo adapters in adapters/. Resolved from this module, so it is found whatever the working directory.
 */
export const DEMO_MODEL_PATH = fileURLToPath(new URL("../../models/lori-demo.gguf", import.meta.url));

export interface DefaultModel {
  readonly id: string;
  readonly path: string;
  /** Set when the demo model was missing and the random fallback is served: what to tell the operator. */
  readonly fallbackWarning?: string;
}

/**
 * The model `serve` loads when no --model is given: the shipped demo model, or when it is missing (a package
 * built without it) a random one generated into `modelsDir` (see {@link ensureEmbeddedModel}).
 */
export async function resolveDefaultModel(modelsDir: string, demoModelPath = DEMO_MODEL_PATH): Promise<DefaultModel> {
  if (await isUsableLlamaGguf(demoModelPath)) return { id: "lori-demo", path: demoModelPath };
  return {
    id: "lori-tiny",
    path: await ensureEmbeddedModel(modelsDir),
    fallbackWarning:
      "the demo model models/lori-demo.gguf is missing or unreadable, so the RANDOM fallback model lori-tiny is " +
      "served: it answers with noise and the demo adapters do not fit it (pass --model FILE.gguf, or restore " +
      "models/lori-demo.gguf, e.g. with npm run demo:build)",
  };
}

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
