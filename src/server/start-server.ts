import { existsSync, readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import type { Llama } from "node-llama-cpp";
import type { ServeConfig } from "../config/serve-config.js";
import { ShuttingDownError } from "../engine/engine-errors.js";
import { defaultThreadCount, loadLlama } from "../engine/llama-runtime.js";
import { ModelRegistry } from "../engine/model-registry.js";
import { parseModelSpec, ServedModel } from "../engine/served-model.js";
import { ServerLifecycle } from "../http/app-deps.js";
import { createApp } from "../http/app.js";
import { ensureEmbeddedModel } from "../model/embedded-model.js";
import { createJsonLogger, silentLogger, type Logger } from "../util/logger.js";

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly models: ModelRegistry;
  readonly lifecycle: ServerLifecycle;
  /** Stop accepting, let in-flight generations finish up to the drain deadline, free everything. */
  close(): Promise<void>;
}

/** Loads the models, then listens. Used by `lori-server serve` and by the tests (port 0). */
export async function startServer(config: ServeConfig, options: { logger?: Logger; llama?: Llama } = {}): Promise<RunningServer> {
  const logger = options.logger ?? (config.logRequests ? createJsonLogger() : silentLogger);
  const llama = options.llama ?? (await loadLlama(config.gpu));
  const threads = config.threads === "auto" ? defaultThreadCount() : config.threads;
  const chatTemplate = readChatTemplate(config.chatTemplate);
  const specs = config.models.length > 0 ? config.models.map(parseModelSpec) : [embeddedSpec(await ensureEmbeddedModel(config.modelsDir))];

  const models = new ModelRegistry();
  const lifecycle = new ServerLifecycle();
  try {
    for (const spec of specs) {
      if (!existsSync(spec.path)) throw new Error(`model file not found: ${spec.path}`);
      const served = await ServedModel.load(llama, spec, {
        gpuLayers: config.gpuLayers,
        threads,
        contextSize: config.contextSize,
        parallel: config.parallel,
        maxQueue: config.maxQueue,
        chatTemplate,
      });
      models.add(served);
      logger.info("model_loaded", { id: spec.id, path: spec.path, context_size: served.contextSize, parallel: config.parallel, threads, gpu: llama.gpu });
    }
  } catch (error) {
    await models.dispose();
    throw error;
  }
  lifecycle.ready = true;

  const app = createApp({ models, config, logger, lifecycle });
  const server = await listen(app.fetch, config.host, config.port);
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  logger.info("listening", { url });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      lifecycle.draining = true;
      // close() stops accepting and ends idle keep-alive sockets; open responses may finish until the deadline.
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, config.drainTimeoutMs).unref());
      await Promise.race([Promise.all([stopped, waitForIdle(models, config.drainTimeoutMs)]), deadline]);
      for (const served of models.list()) served.pool.rejectWaiting(new ShuttingDownError());
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      await stopped;
      await models.dispose();
      logger.info("stopped", {});
    })());
  return { url, port, models, lifecycle, close };
}

function embeddedSpec(path: string) {
  return { id: "lori-tiny", path };
}

function readChatTemplate(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return existsSync(value) ? readFileSync(value, "utf8") : value;
}

function listen(fetch: Parameters<typeof serve>[0]["fetch"], hostname: string, port: number): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port }, () => resolve(server));
    server.once("error", reject);
  });
}

async function waitForIdle(models: ModelRegistry, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && models.list().some((m) => m.pool.busyCount > 0)) {
    await new Promise((r) => setTimeout(r, 25));
  }
}
