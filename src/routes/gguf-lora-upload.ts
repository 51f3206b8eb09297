import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ApiError, apiErrors } from "../errors/api-error.js";
import { GgufError } from "../gguf/gguf-types.js";
import type { AppDeps } from "../http/app-deps.js";
import type { Adapter } from "../lora/adapter.js";
import { writeAdapterDir } from "../lora/adapter-io.js";
import { LoraError } from "../lora/errors.js";
import { importGgufLora } from "../lora/gguf-lora-import.js";

/** The multipart field of a GGUF LoRA upload (instead of adapter_config.json + adapter_model.safetensors). */
export const GGUF_LORA_FIELD = "adapter.gguf";

const refused = (message: string) =>
  new ApiError("invalid_input", `The adapter was refused: ${message}`, "adapter_invalid", GGUF_LORA_FIELD);

/**
 * A GGUF LoRA uploaded to `POST /adapters`: converted exactly as `lori-server import FILE.gguf` converts it
 * (src/lora/gguf-lora-import.ts), checked against the served base, and written to `staging` in our format for
 * the route to install. The base is the served model named by the optional `model` field, or else the one
 * served model it fits (a file that fits several different bases needs `model`). Any refusal is a 400 naming
 * the field, and leaves neither `staging` nor `source` (where the uploaded bytes are read from) behind.
 */
export async function stageGgufLoraUpload(
  deps: AppDeps,
  dirs: { readonly staging: string; readonly source: string },
  file: File,
  modelField: unknown,
): Promise<void> {
  const { staging, source } = dirs;
  const candidates = (() => {
    if (modelField === undefined) return deps.models.list();
    const model = typeof modelField === "string" ? deps.models.get(modelField) : undefined;
    if (!model) throw apiErrors.invalidField("model", `No served model '${String(modelField)}' to import the GGUF LoRA for.`);
    return [model];
  })();
  if (candidates.length === 0) throw refused("no model is served to check the GGUF LoRA against");

  // The upload is read from a file in a staging dir of its own (the poller ignores it, the registry sweeps it
  // if this process dies); messages name it by the field, never by its server path.
  const sourceFile = path.join(source, GGUF_LORA_FIELD);
  const imported: Array<{ id: string; sha256: string; adapter: Adapter }> = [];
  const problems: Array<{ id: string; message: string }> = [];
  try {
    await mkdir(source);
    await writeFile(sourceFile, Buffer.from(await file.arrayBuffer()), { flush: true });
    for (const model of candidates) {
      try {
        const { adapter } = await importGgufLora(sourceFile, model.header);
        imported.push({ id: model.spec.id, sha256: model.fingerprint.sha256, adapter });
      } catch (error) {
        if (!(error instanceof LoraError || error instanceof GgufError)) throw error;
        problems.push({ id: model.spec.id, message: error.message.replaceAll(sourceFile, GGUF_LORA_FIELD) });
      }
    }
  } finally {
    await rm(source, { recursive: true, force: true });
  }
  if (imported.length === 0) {
    // One reason for every base (not a GGUF, a model file, ...) is said once; otherwise per model.
    const reasons = new Set(problems.map((p) => p.message));
    throw refused(reasons.size === 1 ? problems[0]!.message : problems.map((p) => `for model '${p.id}': ${p.message}`).join("; "));
  }
  if (new Set(imported.map((i) => i.sha256)).size > 1) {
    const ids = imported.map((i) => `'${i.id}'`).join(", ");
    throw apiErrors.invalidField("model", `The GGUF LoRA fits several served models (${ids}): name its base in the 'model' field.`);
  }
  try {
    await writeAdapterDir(staging, imported[0]!.adapter);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
