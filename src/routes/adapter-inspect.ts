import { stat } from "node:fs/promises";
import path from "node:path";
import { Hono, type Context } from "hono";
import { LRUCache } from "lru-cache";
import type { AdapterEntry } from "../engine/adapters/adapter-registry.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { readAdapterDir, WEIGHTS_FILE } from "../lora/adapter-io.js";
import { describeAdapter, describePair } from "../lora/adapter-report.js";
import { mayUseAdapter } from "../serving/principal.js";
import { parentModelId } from "./adapter-views.js";

/**
 * Read-only views of `lori-server inspect` over HTTP, for the playground's heatmaps: per-module structure of
 * one adapter, and the interference of a pair. Both are pure functions of the adapters' contents, so they are
 * cached by content hash: a replaced adapter gets a new hash and is computed afresh.
 */
export function adapterInspectRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  const cache = new LRUCache<string, object>({ max: 256 });
  const visible = (c: Context, name: string): AdapterEntry => {
    const entry = deps.adapters.get(name);
    if (!entry || !mayUseAdapter(c.get("principal"), name)) throw apiErrors.adapterNotFound(name);
    return entry;
  };
  const cached = async (key: string, compute: () => Promise<object>) => {
    const hit = cache.get(key);
    if (hit) return hit;
    const value = await compute();
    cache.set(key, value);
    return value;
  };

  app.get("/adapters/:name/modules", async (c) => {
    const entry = visible(c, c.req.param("name"));
    const report = await cached(`modules:${entry.hash}`, async () => {
      const adapter = await readAdapterDir(entry.dir);
      const weightsBytes = (await stat(path.join(entry.dir, WEIGHTS_FILE))).size;
      // base_model_name_or_path may be a path on this machine: the base is named by fingerprint instead.
      const { baseModel: _path, ...report } = describeAdapter(adapter, weightsBytes);
      return report;
    });
    return c.json({ id: entry.name, object: "adapter.modules", hash: entry.hash, parent: parentModelId(deps.models, entry), ...report });
  });

  app.get("/adapters/:name/interference", async (c) => {
    const entry = visible(c, c.req.param("name"));
    const otherName = c.req.query("with");
    if (!otherName) throw apiErrors.invalidField("with", "Name the second adapter: /adapters/{a}/interference?with={b}.");
    const other = visible(c, otherName);
    const report = await cached(`pair:${entry.hash}:${other.hash}`, async () => {
      const [x, y] = await Promise.all([readAdapterDir(entry.dir), readAdapterDir(other.dir)]);
      return describePair(x, y);
    });
    return c.json({ object: "adapter.interference", adapters: [entry.name, other.name], hashes: [entry.hash, other.hash], ...report });
  });
  return app;
}
