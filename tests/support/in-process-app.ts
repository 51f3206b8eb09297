import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Hono } from "hono";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { ModelRegistry } from "../../src/engine/model-registry.js";
import { ServedModel } from "../../src/engine/served-model.js";
import { ServerLifecycle } from "../../src/http/app-deps.js";
import { createApp } from "../../src/http/app.js";
import { Metrics } from "../../src/metrics/metrics.js";
import { silentLogger, type Logger } from "../../src/util/logger.js";
import { getTestLlama } from "./test-llama.js";

export interface InProcessApp {
  readonly app: Hono;
  readonly served: ServedModel;
  readonly metrics: Metrics;
  /** Every `info` log line's event and fields, in order. */
  readonly logs: Array<{ event: string; fields: Record<string, unknown> }>;
  /** POSTs JSON to `path` through `app.request()` (no socket). */
  post(path: string, body: unknown, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

/**
 * The real HTTP app with the real engine on one model file, without a listening socket: what `startServer`
 * composes, minus the port, so tests call `app.request()` and read the logs and metrics directly.
 * One thread, one lane; no API keys.
 */
export async function startInProcessApp(
  modelPath: string,
  workDir: string,
  options: { id?: string; contextSize?: number; parallel?: number } = {},
): Promise<InProcessApp> {
  const logs: InProcessApp["logs"] = [];
  const logger: Logger = { ...silentLogger, info: (event, fields = {}) => logs.push({ event, fields }) };
  const adaptersDir = join(workDir, "adapters");
  await mkdir(adaptersDir, { recursive: true });
  const adapters = new AdapterRegistry(adaptersDir, logger);
  await adapters.start(0);
  const models = new ModelRegistry();
  const metrics = new Metrics(() => models, () => 0);
  try {
    const served = await ServedModel.load(
      await getTestLlama(),
      { id: options.id ?? "tiny", path: modelPath },
      {
        gpuLayers: 0,
        threads: 1,
        contextSize: options.contextSize ?? 512,
        parallel: options.parallel ?? 2,
        maxLanes: 1,
        maxQueue: 16,
        maxAdapters: 4,
        agingMs: 1000,
        chatTemplate: undefined,
        compiledAdaptersDir: join(adaptersDir, ".compiled"),
      },
      adapters,
    );
    models.add(served);
    const lifecycle = new ServerLifecycle();
    lifecycle.ready = true;
    const app = createApp({
      models,
      adapters,
      config: { keys: [], maxBodyBytes: 1 << 20, adapterRoots: [] },
      metrics,
      logger,
      lifecycle,
    });
    const post = (path: string, body: unknown, init: RequestInit = {}) =>
      Promise.resolve(
        app.request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), ...init }),
      );
    return {
      app,
      served,
      metrics,
      logs,
      post,
      close: async () => {
        adapters.close();
        await models.dispose();
      },
    };
  } catch (error) {
    adapters.close();
    await models.dispose();
    throw error;
  }
}
