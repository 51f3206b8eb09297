import { mkdtemp, rename, rm, writeFile, realpath } from "node:fs/promises";
import path from "node:path";
import { Hono, type Context } from "hono";
import { CONFIG_FILE, readAdapterDir, validateAdapterName, WEIGHTS_FILE, writeAdapterDir } from "../lora/adapter-io.js";
import { normalizeAdapterDir } from "../lora/peft-import.js";
import { LoraError } from "../lora/errors.js";
import { mergeCat, mergeLinear } from "../lora/merge.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { mayUseAdapter } from "../serving/principal.js";
import { readJsonBody } from "../http/read-json-body.js";
import { mergeAdaptersSchema, registerAdapterSchema } from "../protocol/adapter-schemas.js";
import { adapterObject } from "./adapter-views.js";

/**
 * The adapter store over HTTP. Reads honour the caller's allow-list; register, delete and merge need an
 * admin key. Changes take effect for new requests at once; requests already running keep the compiled
 * adapter they started with (compiled files are content-addressed and freed only when no lane uses them).
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

  app.get("/adapters", (c) => {
    const principal = c.get("principal");
    const data = deps.adapters.list().filter((e) => mayUseAdapter(principal, e.name)).map((e) => adapterObject(deps.models, e));
    return c.json({ object: "list", data });
  });

  app.get("/adapters/:name", (c) => c.json(adapterObject(deps.models, visible(c, c.req.param("name")))));

  app.post("/adapters/merge", async (c) => {
    requireAdmin(c);
    const request = await readJsonBody(c, mergeAdaptersSchema);
    assertFree(request.name);
    const inputs = await Promise.all(
      request.adapters.map(async ({ name, weight }) => ({ adapter: await readAdapterDir(visible(c, name).dir), weight, name })),
    );
    const merged = request.method === "cat" ? mergeCat(inputs) : mergeLinear(inputs);
    await writeAdapterDir(path.join(deps.adapters.dir, request.name), merged);
    await deps.adapters.refresh();
    return c.json(adapterObject(deps.models, visible(c, request.name)), 201);
  });

  app.post("/adapters", async (c) => {
    requireAdmin(c);
    const contentType = c.req.header("content-type") ?? "";
    if (contentType.startsWith("multipart/form-data")) return c.json(await upload(c), 201);
    const request = await readJsonBody(c, registerAdapterSchema);
    assertFree(request.name);
    const dir = await allowedAdapterPath(deps, request.path);
    await readAdapterDir(dir); // refuse anything we could not serve: tensors, not just the config
    if (path.dirname(dir) === (await realpath(deps.adapters.dir)) && path.basename(dir) === request.name) await deps.adapters.refresh();
    else await deps.adapters.registerPath(request.name, dir);
    return c.json(adapterObject(deps.models, visible(c, request.name)), 201);
  });

  app.delete("/adapters/:name", async (c) => {
    requireAdmin(c);
    const entry = visible(c, c.req.param("name"));
    const insideStore = path.dirname(path.resolve(entry.dir)) === path.resolve(deps.adapters.dir);
    if (insideStore) {
      // Move aside first so the registry never sees a half-deleted directory.
      const trash = path.join(deps.adapters.dir, `.deleted-${entry.name}-${Date.now()}`);
      await rename(entry.dir, trash);
      await rm(trash, { recursive: true, force: true });
    } else {
      deps.adapters.unregisterPath(entry.name);
    }
    await deps.adapters.refresh();
    return c.json({ id: entry.name, object: "adapter", deleted: true });
  });

  async function upload(c: Context) {
    // undici throws a bare TypeError on a malformed multipart body: that is the client's error, not ours.
    const body = await c.req.parseBody().catch(() => {
      throw apiErrors.invalidBody("The multipart body is malformed (check its boundary and parts).");
    });
    const name = typeof body.name === "string" ? body.name : "";
    assertFree(name);
    const config = body[CONFIG_FILE];
    const weights = body[WEIGHTS_FILE];
    if (!(config instanceof File) || !(weights instanceof File)) {
      throw apiErrors.invalidField(null, `A multipart upload needs the fields 'name', '${CONFIG_FILE}' and '${WEIGHTS_FILE}' (files).`);
    }
    const staging = await mkdtemp(path.join(deps.adapters.dir, `.upload-${name}-`));
    try {
      await writeFile(path.join(staging, CONFIG_FILE), Buffer.from(await config.arrayBuffer()));
      await writeFile(path.join(staging, WEIGHTS_FILE), Buffer.from(await weights.arrayBuffer()));
      // Refuse anything we could not serve before it becomes visible; recover LoRI structure as `import` does.
      await normalizeAdapterDir(staging, name);
      await rename(staging, path.join(deps.adapters.dir, name));
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
    await deps.adapters.refresh();
    return adapterObject(deps.models, visible(c, name));
  }

  return app;
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
    throw apiErrors.invalidField("path", `No such directory: ${requested}`);
  });
  if (!roots.some((root) => resolved === root || resolved.startsWith(root + path.sep)) || roots.includes(resolved)) {
    throw apiErrors.invalidField("path", "The path must be a directory under --adapters-dir or an --adapter-root.");
  }
  return resolved;
}
