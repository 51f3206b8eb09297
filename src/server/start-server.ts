import { existsSync } from "node:fs";
import type { Hono } from "hono";
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import type { Llama } from "node-llama-cpp";
import { readKeysFile, type KeyGrant } from "../config/keys-file.js";
import type { ServeConfig } from "../config/serve-config.js";
import { AdapterRegistry } from "../engine/adapters/adapter-registry.js";
import { CompiledCache } from "../engine/adapters/compiled-cache.js";
import { readChatTemplateOption } from "../engine/chat-prompt.js";
import { ShuttingDownError } from "../engine/engine-errors.js";
import type { LaneEvents } from "../engine/lanes/lane-scheduler.js";
import type { EngineInfo } from "../engine/engine-build.js";
import { defaultThreadCount, engineInfo, loadLlama } from "../engine/llama-runtime.js";
import { ModelRegistry } from "../engine/model-registry.js";
import { registerFineTuningMetrics } from "../fine-tuning/fine-tuning-metrics.js";
import { registerCompiledCacheMetrics } from "../metrics/compiled-cache-metrics.js";
import { registerEngineMetrics } from "../metrics/engine-metrics.js";
import { registerMergedLanesMetrics } from "../metrics/merged-lanes-metrics.js";
import { defaultTrainingThreads, FineTuningService } from "../fine-tuning/fine-tuning-service.js";
import { parseModelSpec, ServedModel } from "../engine/served-model.js";
import { ServerLifecycle } from "../serving/serving-deps.js";
import { createApp } from "../http/app.js";
import { Metrics } from "../metrics/metrics.js";
import { resolveDefaultModel } from "../model/embedded-model.js";
import { createJsonLogger, silentLogger, type Logger } from "../util/logger.js";

/** Everything a server is, without a socket: the in-process tests call `app.request()` on it. */
export interface ServerCore {
  readonly app: Hono;
  readonly models: ModelRegistry;
  readonly adapters: AdapterRegistry;
  readonly lifecycle: ServerLifecycle;
  readonly metrics: Metrics;
  /** `.compiled/` under its disk budget: bytes, files and evictions for the metrics. */
  readonly compiledCache: CompiledCache;
  readonly logger: Logger;
  readonly fineTuning: FineTuningService;
  /** The llama.cpp binaries in use (docs/engine.md). */
  readonly engine: EngineInfo;
  /** Sequences generating right now, over all models. */
  inFlight(): number;
  /** Frees models, lanes and the registry's poller; idempotent. */
  dispose(): Promise<void>;
}

export interface RunningServer extends ServerCore {
  readonly url: string;
  readonly port: number;
  /** Stop accepting, let in-flight generations finish up to the drain deadline, free everything. */
  close(): Promise<void>;
}

/** Loads llama.cpp, the adapter registry and the models, and builds the HTTP app; listens on nothing. */
export async function createServerCore(config: ServeConfig, options: { logger?: Logger; llama?: Llama } = {}): Promise<ServerCore> {
  const logger = options.logger ?? (config.logRequests ? createJsonLogger() : silentLogger);
  const keys = resolveKeys(config);
  const llama = options.llama ?? (await loadLlama(config.gpu));
  const engine = engineInfo(llama);
  const threads = config.threads === "auto" ? defaultThreadCount(undefined, engine.threadPool) : config.threads;
  // Lanes share the cores through governContextThreads (src/engine/thread-pool.ts), decode by decode;
  // node-llama-cpp's own thread splitter (at most max(4, cores) threads in all) would make a third busy lane
  // wait for a thread instead of decoding on one.
  if (threads > 1) llama.maxThreads = 0;
  logger.info("engine", {
    build: engine.build,
    openmp: engine.openmp,
    gpu: engine.gpu,
    llama_cpp: engine.llamaCpp,
    threads,
    thread_pool: engine.threadPool,
    ...(engine.reason ? { reason: engine.reason } : {}),
    ...(engine.threadPoolReason ? { thread_pool_reason: engine.threadPoolReason } : {}),
  });
  const chatTemplate = readChatTemplateOption(config.chatTemplate);
  const specs = config.models.length > 0 ? config.models.map(parseModelSpec) : [await resolveDefaultModel(config.modelsDir)];
  for (const spec of specs)
    if ("fallbackWarning" in spec && spec.fallbackWarning) logger.warn("fallback_model", { message: spec.fallbackWarning });

  await mkdir(config.adaptersDir, { recursive: true });
  // The registry validates adapters against the served bases, so it scans only once the models are loaded.
  const adapters = new AdapterRegistry(config.adaptersDir, logger);
  const models = new ModelRegistry();
  const compiledCache = new CompiledCache(path.join(config.adaptersDir, ".compiled"), {
    budgetBytes: config.compiledCacheMb * 1024 * 1024,
    inUse: (filePath) => models.list().some((m) => m.lanes.residency.isRetained(filePath)),
    logger,
  });
  compiledCache.followRegistry(adapters);
  await compiledCache.open();
  const metrics = new Metrics(
    () => models,
    () => models.list().reduce((n, m) => n + m.lanes.residency.residentBytes, 0),
    { maxAdapterSetLabels: config.metricsMaxAdapterSets },
  );
  const events: LaneEvents = {
    onSwap: (_from, to, ms, lane) => {
      metrics.swaps.inc();
      metrics.swapSeconds.observe(ms / 1000);
      logger.info("lane_swap", { lane: lane.id, to: to.label || "(base)", ms: Math.round(ms * 100) / 100 });
    },
    onLaneCreated: () => metrics.lanesCreated.inc(),
    onAdapterLoaded: () => metrics.adapterLoads.inc(),
    onAdapterEvicted: () => metrics.adapterEvictions.inc(),
    onAdapterEvictionFailed: (_filePath, error) => logger.warn("adapter_eviction_failed", { error: error.message }),
    onDecode: (tokens) => metrics.tokensPerDecode.observe(tokens),
    onLaneFailed: (lane, error) => {
      metrics.laneFailures.inc();
      logger.warn("lane_failed", { lane: lane.id, state: lane.state, error: error.message });
    },
  };
  const lifecycle = new ServerLifecycle();
  try {
    for (const spec of specs) {
      if (!existsSync(spec.path)) throw new Error(`model file not found: ${spec.path}`);
      const served = await ServedModel.load(
        llama,
        spec,
        {
          gpuLayers: config.gpuLayers,
          threads,
          contextSize: config.contextSize,
          parallel: config.parallel,
          maxLanes: config.maxLanes,
          maxQueue: config.maxQueue,
          maxAdapters: config.maxAdapters,
          agingMs: config.agingMs,
          batchWaitMs: config.batchWaitMs,
          threadPool: { mode: engine.threadPool, poll: config.poll },
          flashAttention: config.flashAttention,
          chatTemplate,
          compiledAdaptersDir: compiledCache.root,
          compiledCache,
          mergedLanes: {
            budgetBytes: config.mergedLanesMb * 1024 * 1024,
            window: config.mergedLanesWindow,
            share: config.mergedLanesShare,
            minRequests: config.mergedLanesMinRequests,
            logger,
          },
        },
        adapters,
        events,
      );
      models.add(served);
      logger.info("model_loaded", {
        id: spec.id,
        path: spec.path,
        context_size: served.contextSize,
        parallel: config.parallel,
        max_lanes: served.lanes.stats.maxLanes,
        threads,
        gpu: llama.gpu,
      });
    }
    adapters.setBases(models.list().map((m) => ({ id: m.spec.id, header: m.header, fingerprint: m.fingerprint })));
    await adapters.start(config.adaptersPollMs);
  } catch (error) {
    adapters.close();
    await models.dispose();
    throw error;
  }
  let fineTuning: FineTuningService;
  try {
    fineTuning = await FineTuningService.open(
      {
        dataDir: config.dataDir,
        adaptersDir: config.adaptersDir,
        maxFileBytes: Math.floor(config.maxFileMb * 1024 * 1024),
        maxTrainingJobs: config.maxTrainingJobs,
        threads: config.trainingThreads === "auto" ? defaultTrainingThreads() : config.trainingThreads,
        gpu: config.gpu === "off" ? "off" : "auto",
        llama,
        ...(config.chatTemplate ? { chatTemplate: config.chatTemplate } : {}),
      },
      { models, adapters, logger },
    );
  } catch (error) {
    adapters.close();
    await models.dispose();
    throw error;
  }
  registerFineTuningMetrics(metrics.registry, fineTuning);
  registerCompiledCacheMetrics(metrics.registry, compiledCache);
  registerMergedLanesMetrics(metrics.registry, () => models.list(), metrics.adapterSets);
  registerEngineMetrics(metrics.registry, engine, threads);
  lifecycle.ready = true;
  warnAboutUnusableAdapters(adapters, logger);

  const app = createApp({
    models,
    adapters,
    config: {
      keys,
      maxBodyBytes: config.maxBodyBytes,
      adapterRoots: config.adapterRoots,
      ui: !config.noUi,
      publicMetrics: config.publicMetrics,
    },
    metrics,
    logger,
    lifecycle,
    fineTuning,
    fineTunedModels: fineTuning,
  });
  let disposing: Promise<void> | undefined;
  const dispose = () =>
    (disposing ??= (async () => {
      // Trainers stop with a checkpoint first; their jobs resume at the next start.
      await fineTuning.dispose();
      adapters.close();
      compiledCache.close();
      await models.dispose();
    })());
  const inFlight = () => models.list().reduce((n, m) => n + m.busySequences, 0);
  return { app, models, adapters, lifecycle, metrics, compiledCache, logger, fineTuning, engine, inFlight, dispose };
}

/** Loads the models, then listens. Used by `lori-server serve` and by the tests (port 0). */
export async function startServer(config: ServeConfig, options: { logger?: Logger; llama?: Llama } = {}): Promise<RunningServer> {
  const core = await createServerCore(config, options);
  const { app, models, adapters, lifecycle, logger } = core;
  let server: ServerType;
  try {
    server = await listen(app.fetch, config);
  } catch (error) {
    // Nothing may outlive a failed start: the poller timer and the models would keep the process alive.
    await core.dispose();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  logger.info("listening", { url, adapters: adapters.list().map((a) => a.name) });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      lifecycle.draining = true;
      // close() stops accepting and ends idle keep-alive sockets; open responses may finish until the deadline.
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, config.drainTimeoutMs).unref());
      await Promise.race([Promise.all([stopped, waitForIdle(models, config.drainTimeoutMs)]), deadline]);
      for (const served of models.list()) served.lanes.rejectWaiting(new ShuttingDownError());
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      await stopped;
      await core.dispose();
      logger.info("stopped", {});
    })());
  return { ...core, url, port, close };
}

/**
 * Adapters that fit none of the loaded models (by fingerprint or shapes) are never listed; say so once at
 * start, naming them all, besides the registry's one warning per adapter with its reason.
 */
function warnAboutUnusableAdapters(adapters: AdapterRegistry, logger: Logger): void {
  const unusable = adapters.unfit();
  if (unusable.length === 0) return;
  logger.warn("adapters_fit_no_model", {
    adapters: unusable,
    message: `${unusable.length} adapter(s) fit none of the loaded models (made for another base model), so they are not served: ${unusable.join(", ")}`,
  });
}

/** `--api-key` values are admin keys; `--keys-file` adds keys with roles and adapter allow-lists. */
function resolveKeys(config: ServeConfig): KeyGrant[] {
  const keys: KeyGrant[] = config.apiKeys.map((key) => ({ key, role: "admin" as const }));
  if (config.keysFile) keys.push(...readKeysFile(config.keysFile));
  return keys;
}

/**
 * Listens with bounded request reception: a client that trickles its headers or body is answered 408 and
 * disconnected after `--header-timeout-ms` / `--body-timeout-ms` instead of holding a connection for minutes.
 * Responses (long streams) are not limited by either.
 */
function listen(fetch: Parameters<typeof serve>[0]["fetch"], config: ServeConfig): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch,
        hostname: config.host,
        port: config.port,
        serverOptions: {
          headersTimeout: config.headerTimeoutMs,
          requestTimeout: Math.max(config.bodyTimeoutMs, config.headerTimeoutMs),
          // Node checks the two timeouts on this interval (default 30 s, far coarser than the limits).
          connectionsCheckingInterval: Math.min(1000, config.headerTimeoutMs),
        },
      },
      () => resolve(server),
    );
    server.once("error", reject);
  });
}

async function waitForIdle(models: ModelRegistry, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && models.list().some((m) => m.busySequences > 0)) {
    await new Promise((r) => setTimeout(r, 25));
  }
}
