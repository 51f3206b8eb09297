import { randomBytes } from "node:crypto";
import { mkdir, realpath, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { Hono, type Context } from "hono";
import type { Adapter } from "../lora/adapter.js";
import { CONFIG_FILE, validateAdapterName, WEIGHTS_FILE, writeAdapterDir } from "../lora/adapter-io.js";
import { LoraError } from "../lora/errors.js";
import { mergeAdapters } from "../lora/merge-methods.js";
import { HTTP_PARAMETER_NAMES, MergeParameterError } from "../lora/merge-options.js";
import { normalizeAdapterDir } from "../lora/peft-import.js";
import { ApiError, apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { mayUseAdapter } from "../serving/principal.js";
import { readJsonBody } from "../http/read-json-body.js";
import { mergeAdaptersSchema, registerAdapterSchema } from "../protocol/adapter-schemas.js";
import { adapterObject } from "./adapter-views.js";
import { GGUF_LORA_FIELD, stageGgufLoraUpload } from "./gguf-lora-upload.js";

/**
 * The adapter store over HTTP. Reads honour the caller's allow-list; register, delete and merge need an
 * admin key. Every write goes through a staging directory (a dot-name the poller ignores) that the registry
 * validates exactly as it validates what the poller finds, and only then renames into place: an adapter that
 * could not be served (NaN values, shapes that fit no served model, symlinks, ...) is a 400 and never
 * visible; a full disk is a 507 and leaves nothing behind. Requests already running keep the compiled
 * adapter they started with.
 */
export function adaptersRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const requireAdmin = (c: Context) => {
    if (c.get("principal").role !== "admin") throw apiErrors.adminRequired();
  };
  const visible = (c: Context, name: string) => {
    const entry = deps.adapters.get(name);
    if (!entry || !mayUseAdapter(c.get("principal"), name)) throw apiErrors.adapterNotFound(name);
    return entry;
  };
  const assertFree = (name: string) => {
    validateName(name);
    if (deps.adapters.get(name) || deps.models.get(name)) throw apiErrors.adapterExists(name);
  };
  const stagingDir = (name: string, op: string) => path.join(deps.adapters.dir, `.${op}-${name}-${randomBytes(6).toString("hex")}`);

  app.get("/adapters", (c) => {
    const principal = c.get("principal");
    const data = deps.adapters
      .list()
      .filter((e) => mayUseAdapter(principal, e.name))
      .map((e) => adapterObject(deps.models, e));
    return c.json({ object: "list", data });
  });

  app.get("/adapters/:name", (c) => c.json(adapterObject(deps.models, visible(c, c.req.param("name")))));

  app.post("/adapters/merge", async (c) => {
    requireAdmin(c);
    const request = await readJsonBody(c, mergeAdaptersSchema);
    assertFree(request.name);
    const inputs: Array<{ adapter: Adapter; weight: number; name: string }> = [];
    for (const { name, weight } of request.adapters) {
      visible(c, name);
      // Replaced meanwhile (a plain `cp` over it, say): the registry rescans and the merge uses the new version.
      const current = await deps.adapters.readCurrent(name);
      if (!current) throw apiErrors.adapterNotFound(name);
      inputs.push({ adapter: current.adapter, weight, name });
    }
    let merged: Adapter;
    try {
      merged = mergeAdapters(inputs, request.method, {
        density: request.density,
        majoritySignMethod: request.majority_sign_method,
        seed: request.seed,
        rank: request.rank,
      });
    } catch (error) {
      if (error instanceof MergeParameterError) throw apiErrors.invalidField(HTTP_PARAMETER_NAMES[error.parameter], error.message);
      if (error instanceof LoraError) throw apiErrors.invalidField("adapters", error.message);
      throw error;
    }
    const staging = stagingDir(request.name, "merge");
    try {
      await writeAdapterDir(staging, merged);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
    const entry = await install(request.name, staging, "adapters");
    return c.json(adapterObject(deps.models, entry), 201);
  });

  app.post("/adapters", async (c) => {
    requireAdmin(c);
    const contentType = c.req.header("content-type") ?? "";
    if (contentType.startsWith("multipart/form-data")) return c.json(await upload(c), 201);
    const request = await readJsonBody(c, registerAdapterSchema);
    assertFree(request.name);
    const dir = await allowedAdapterPath(deps, request.path);
    if (path.dirname(dir) === (await realpath(deps.adapters.dir)) && path.basename(dir) === request.name) {
      // Already in the store under its own name: validate it as the poller would, and say why if it fails.
      await deps.adapters.validate(dir, request.name).catch(invalidAs("path"));
      await deps.adapters.refresh();
    } else {
      await deps.adapters.registerPath(request.name, dir).catch(invalidAs("path"));
    }
    return c.json(adapterObject(deps.models, visible(c, request.name)), 201);
  });

  app.delete("/adapters/:name", async (c) => {
    requireAdmin(c);
    const entry = visible(c, c.req.param("name"));
    await deps.adapters.remove(entry.name);
    return c.json({ id: entry.name, object: "adapter", deleted: true });
  });

  async function upload(c: Context) {
    // undici throws a bare TypeError on a malformed multipart body: that is the client's error, not ours.
    const body = await c.req.parseBody().catch(() => {
      throw apiErrors.invalidBody("The multipart body is malformed (check its boundary and parts).");
    });
    const name = typeof body.name === "string" ? body.name : "";
    assertFree(name);
    const gguf = body[GGUF_LORA_FIELD];
    if (gguf instanceof File) {
      const staging = stagingDir(name, "upload");
      await stageGgufLoraUpload(deps, { staging, source: stagingDir(name, "upload") }, gguf, body.model);
      return adapterObject(deps.models, await install(name, staging, GGUF_LORA_FIELD));
    }
    const config = body[CONFIG_FILE];
    const weights = body[WEIGHTS_FILE];
    if (!(config instanceof File) || !(weights instanceof File)) {
      throw apiErrors.invalidField(
        null,
        `A multipart upload needs the fields 'name' and either '${CONFIG_FILE}' + '${WEIGHTS_FILE}' or '${GGUF_LORA_FIELD}' (files).`,
      );
    }
    const staging = stagingDir(name, "upload");
    try {
      await mkdir(staging);
      await writeFile(path.join(staging, CONFIG_FILE), Buffer.from(await config.arrayBuffer()), { flush: true });
      await writeFile(path.join(staging, WEIGHTS_FILE), Buffer.from(await weights.arrayBuffer()), { flush: true });
      // Recover LoRI structure (seeded A, a mask from B's zeros) as `import` does; install validates after.
      await normalizeAdapterDir(staging, name);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      return invalidAs(uploadField(error))(error);
    }
    return adapterObject(deps.models, await install(name, staging, null));
  }

  /**
   * Validates the staging dir and renames it into place (the registry removes it on any failure). `param`
   * null: an upload, whose offending field is the file the message names.
   *
   * Another replica sharing the store may install the same name between the registry's existence check and
   * the rename. rename(2) of a directory onto a non-empty directory fails (ENOTEMPTY, or EEXIST on some
   * systems) and replaces nothing, on a local disk as on NFS, where the server performs the rename as one
   * operation: so the loser gets this 409 and the winner's adapter stays intact.
   */
  async function install(name: string, staging: string, param: string | null) {
    return deps.adapters.install(name, staging).catch((error: unknown) => {
      if (error instanceof LoraError && error.code === "ADAPTER_EXISTS") throw apiErrors.adapterExists(name);
      if (isErrnoCode(error, "ENOTEMPTY") || isErrnoCode(error, "EEXIST")) throw apiErrors.adapterExists(name);
      return invalidAs(param ?? uploadField(error))(error);
    });
  }

  return app;
}

function isErrnoCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/** The multipart field a refused upload's message is about. */
function uploadField(error: unknown): string {
  return error instanceof Error && error.message.includes(CONFIG_FILE) ? CONFIG_FILE : WEIGHTS_FILE;
}

/** A refused adapter: 400 naming what is wrong (messages carry adapter names and file names, never server paths). */
function invalidAs(param: string | null) {
  return (error: unknown): never => {
    if (error instanceof LoraError && (error.kind === "invalid_input" || error.kind === "invalid_request")) {
      throw new ApiError("invalid_input", `The adapter was refused: ${error.message}`, "adapter_invalid", param);
    }
    throw error;
  };
}

function validateName(name: string): void {
  try {
    validateAdapterName(name);
  } catch (error) {
    throw apiErrors.invalidField("name", (error as LoraError).message);
  }
}

/** The directory, resolved through symlinks, if it lies under the adapters dir or an allowed root. */
async function allowedAdapterPath(deps: AppDeps, requested: string): Promise<string> {
  const roots = await Promise.all([deps.adapters.dir, ...deps.config.adapterRoots].map((r) => realpath(r).catch(() => path.resolve(r))));
  const resolved = await realpath(path.resolve(deps.adapters.dir, requested)).catch(() => {
    throw apiErrors.invalidField("path", "No such directory.");
  });
  if (!roots.some((root) => resolved === root || resolved.startsWith(root + path.sep)) || roots.includes(resolved)) {
    throw apiErrors.invalidField("path", "The path must be a directory under --adapters-dir or an --adapter-root.");
  }
  return resolved;
}
