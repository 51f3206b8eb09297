import { resolveServeConfig, type ServeConfig, serveEnvVars } from "../../config/serve-config.js";
import { ERROR_KINDS, KindedError } from "../../errors/error-kinds.js";
import { startServer } from "../../server/start-server.js";
import { createLogger, resolveLogFormat } from "../../util/logger.js";
import type { CliCommand } from "../command.js";
import { CliError } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server serve [options]

Serves GGUF models over an OpenAI-compatible HTTP API. With no --model, serves the demo model
models/lori-demo.gguf (id lori-demo) with the demo adapters; if that file is missing, it falls back, with a
warning, to the random lori-tiny model written to --models-dir. Nothing is downloaded.

Options (each also read from the environment variable shown):
  --model PATH|NAME=PATH   GGUF model to serve; repeatable. NAME is the id clients send  [${serveEnvVars.models}, comma-separated]
  --models-dir DIR         where the fallback lori-tiny model is written (default ./models) [${serveEnvVars.modelsDir}]
  --adapters-dir DIR       adapter store (default ./adapters)                           [${serveEnvVars.adaptersDir}]
  --host HOST              bind address (default 127.0.0.1)                             [${serveEnvVars.host}]
  --port N                 port (default 8080; 0 = any free port)                       [${serveEnvVars.port}]
  --gpu auto|cuda|vulkan|metal|off   compute backend (default auto: CUDA, then Vulkan, then CPU) [${serveEnvVars.gpu}]
  --gpu-layers auto|max|N  layers to offload to the GPU (default auto)                  [${serveEnvVars.gpuLayers}]
  --threads auto|N         CPU threads per context (default auto: all of <=2 cores with the persistent thread pool, else 1; docs/engine.md) [${serveEnvVars.threads}]
  --context-size N         tokens of context per sequence (default 4096, capped at the model's) [${serveEnvVars.contextSize}]
  --parallel N             concurrent sequences per model, batched together (default 4) [${serveEnvVars.parallel}]
  --max-queue N            requests that may wait for a lane; beyond it 429 (default 64) [${serveEnvVars.maxQueue}]
  --max-lanes auto|N       contexts per model, each bound to one adapter set (default auto: what fits 1/4 of free memory, 1-8) [${serveEnvVars.maxLanes}]
  --max-adapters N         compiled adapter files kept loaded when unused (LRU beyond; default 16) [${serveEnvVars.maxAdapters}]
  --compiled-cache-mb N    disk budget of <adapters-dir>/.compiled/ in MiB (LRU beyond, never what a lane holds; default 1024) [${serveEnvVars.compiledCacheMb}]
  --merged-lanes-mb N     memory budget of merged-weight lanes in MiB: a hot adapter set (F32/F16 bases) is folded
                           into a private copy of the model and served at the base's speed (default 0 = off;
                           docs/merged-lanes.md) [${serveEnvVars.mergedLanesMb}]
  --merged-lanes-window N  admitted requests a set's traffic share is taken over (default 64) [${serveEnvVars.mergedLanesWindow}]
  --merged-lanes-share F   share of that window that makes a set hot, 0 < F <= 1 (default 0.5) [${serveEnvVars.mergedLanesShare}]
  --merged-lanes-min-requests N  requests in the window a hot set needs at least (default 16) [${serveEnvVars.mergedLanesMinRequests}]
  --aging-ms N             a request waiting longer than this is not overtaken by younger ones (default 250) [${serveEnvVars.agingMs}]
  --flash-attention auto|on|off  flash attention in the lanes' contexts (default auto: llama.cpp enables it where
                           the backend supports it, as llama-server does) [${serveEnvVars.flashAttention}]
  --poll 0-100             how long idle threads of the persistent thread pool poll for work before they sleep
                           (default 0 = sleep at once, which leaves the core to Node; llama.cpp uses 50) [${serveEnvVars.poll}]
  --batch-wait-ms N        a decode waits up to this for every generating sequence of its lane, so batches are full (default 1; 0 = off) [${serveEnvVars.batchWaitMs}]
  --adapters-poll-ms N     how often --adapters-dir is rescanned for added/changed/removed adapters (default 1000; 0 = never) [${serveEnvVars.adaptersPollMs}]
  --adapter-root DIR       another directory POST /adapters {path} may register from; repeatable [${serveEnvVars.adapterRoots}, comma-separated]
  --keys-file FILE         JSON {"keys": [{"key", "role": "admin"|"user", "adapters"?: [...]}]} [${serveEnvVars.keysFile}]
  --api-key KEY            require 'Authorization: Bearer KEY' (all routes but /health); an admin key; repeatable [${serveEnvVars.apiKeys}, comma-separated]
  --chat-template T        Jinja chat template text or a file holding one, for models without one [${serveEnvVars.chatTemplate}]
  --max-body-bytes N       request body limit (default 8388608)                         [${serveEnvVars.maxBodyBytes}]
  --drain-timeout-ms N     on SIGTERM/SIGINT, how long in-flight requests may finish (default 30000) [${serveEnvVars.drainTimeoutMs}]
  --header-timeout-ms N    a client must send its request headers within this (default 10000; then 408) [${serveEnvVars.headerTimeoutMs}]
  --body-timeout-ms N      a client must send its whole request within this (default 60000; then 408) [${serveEnvVars.bodyTimeoutMs}]
  --public-metrics         serve /metrics without a key, every series (for scrapers that send none, such as the
                           inference gateway's endpoint picker; keep the port private) [${serveEnvVars.publicMetrics}]
  --metrics-max-adapter-sets N  distinct adapter_set labels in /metrics; later sets count as "(other)" (default 64) [${serveEnvVars.metricsMaxAdapterSets}]
  --no-ui                  do not serve the browser playground at / and /ui/ (1|true)  [${serveEnvVars.noUi}]
  --data-dir DIR           uploaded files and fine-tuning jobs (default ./data)         [${serveEnvVars.dataDir}]
  --max-file-mb N          size limit of a file uploaded to /v1/files (default 100)     [${serveEnvVars.maxFileMb}]
  --max-training-jobs N    fine-tuning jobs that train at once; others queue (default 1) [${serveEnvVars.maxTrainingJobs}]
  --training-threads auto|N  CPU threads per training job (default auto: half the cores) [${serveEnvVars.trainingThreads}]
  --log-format auto|json|text  log lines on stderr: text for people, JSON lines for collectors
                           (default auto: text on a terminal, JSON otherwise)          [${serveEnvVars.logFormat}]
  --quiet                  no request or info log on stderr (warnings and errors still print)
  -h, --help               this help
`;

/**
 * The first SIGTERM or SIGINT drains: in-flight requests finish (up to the drain timeout), then the process
 * exits 0. Another SIGTERM while draining changes nothing (orchestrators repeat it) and says so; a second
 * SIGINT is a person at the keyboard who wants out now: exit 130 at once.
 */
function waitForShutdown(server: { close(): Promise<void>; inFlight(): number }, drainTimeoutMs: number): Promise<number> {
  return new Promise<number>((resolve) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (!draining) {
        draining = true;
        process.stderr.write(
          `lori-server: ${signal}, draining ${server.inFlight()} in-flight request(s) (up to ${drainTimeoutMs} ms; SIGINT again forces exit)\n`,
        );
        server.close().then(
          () => resolve(0),
          () => resolve(1),
        );
        return;
      }
      if (signal === "SIGINT") {
        process.stderr.write("lori-server: second SIGINT, exiting now without draining\n");
        process.exit(130);
      }
      process.stderr.write(`lori-server: ${signal} again, still draining ${server.inFlight()} in-flight request(s)\n`);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

export const serveCommand: CliCommand = {
  name: "serve",
  summary: "Serve GGUF models over an OpenAI-compatible HTTP API",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      model: { type: "string", multiple: true },
      "models-dir": { type: "string" },
      "adapters-dir": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      gpu: { type: "string" },
      "gpu-layers": { type: "string" },
      threads: { type: "string" },
      poll: { type: "string" },
      "flash-attention": { type: "string" },
      "context-size": { type: "string" },
      parallel: { type: "string" },
      "max-queue": { type: "string" },
      "max-lanes": { type: "string" },
      "max-adapters": { type: "string" },
      "compiled-cache-mb": { type: "string" },
      "merged-lanes-mb": { type: "string" },
      "merged-lanes-window": { type: "string" },
      "merged-lanes-share": { type: "string" },
      "merged-lanes-min-requests": { type: "string" },
      "aging-ms": { type: "string" },
      "batch-wait-ms": { type: "string" },
      "adapters-poll-ms": { type: "string" },
      "adapter-root": { type: "string", multiple: true },
      "keys-file": { type: "string" },
      "api-key": { type: "string", multiple: true },
      "chat-template": { type: "string" },
      "max-body-bytes": { type: "string" },
      "drain-timeout-ms": { type: "string" },
      "header-timeout-ms": { type: "string" },
      "body-timeout-ms": { type: "string" },
      "metrics-max-adapter-sets": { type: "string" },
      "public-metrics": { type: "boolean" },
      "no-ui": { type: "boolean" },
      "data-dir": { type: "string" },
      "max-file-mb": { type: "string" },
      "max-training-jobs": { type: "string" },
      "training-threads": { type: "string" },
      "log-format": { type: "string" },
      quiet: { type: "boolean" },
    });
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    let config: ServeConfig;
    try {
      config = resolveServeConfig({
        models: v.model,
        modelsDir: v["models-dir"],
        adaptersDir: v["adapters-dir"],
        host: v.host,
        port: v.port,
        gpu: v.gpu,
        gpuLayers: v["gpu-layers"],
        threads: v.threads,
        contextSize: v["context-size"],
        parallel: v.parallel,
        maxQueue: v["max-queue"],
        maxLanes: v["max-lanes"],
        maxAdapters: v["max-adapters"],
        compiledCacheMb: v["compiled-cache-mb"],
        mergedLanesMb: v["merged-lanes-mb"],
        mergedLanesWindow: v["merged-lanes-window"],
        mergedLanesShare: v["merged-lanes-share"],
        mergedLanesMinRequests: v["merged-lanes-min-requests"],
        agingMs: v["aging-ms"],
        batchWaitMs: v["batch-wait-ms"],
        poll: v.poll,
        flashAttention: v["flash-attention"],
        adaptersPollMs: v["adapters-poll-ms"],
        adapterRoots: v["adapter-root"],
        keysFile: v["keys-file"],
        apiKeys: v["api-key"],
        chatTemplate: v["chat-template"],
        maxBodyBytes: v["max-body-bytes"],
        drainTimeoutMs: v["drain-timeout-ms"],
        headerTimeoutMs: v["header-timeout-ms"],
        bodyTimeoutMs: v["body-timeout-ms"],
        metricsMaxAdapterSets: v["metrics-max-adapter-sets"],
        publicMetrics: v["public-metrics"] ? true : undefined,
        noUi: v["no-ui"] ? true : undefined,
        dataDir: v["data-dir"],
        maxFileMb: v["max-file-mb"],
        maxTrainingJobs: v["max-training-jobs"],
        trainingThreads: v["training-threads"],
        logRequests: v.quiet ? false : undefined,
        logFormat: v["log-format"],
      });
    } catch (error) {
      throw new CliError((error as Error).message);
    }
    const logger = createLogger({
      format: resolveLogFormat(config.logFormat, process.stderr.isTTY === true),
      minLevel: config.logRequests ? "info" : "warn",
    });
    const server = await startServer(config, { logger }).catch((error: unknown) => {
      throw startFailure(error, config.host, config.port);
    });
    process.stderr.write(
      `lori-server listening on ${server.url} (models: ${server.models
        .list()
        .map((m) => m.spec.id)
        .join(", ")}; engine: ${server.engine.build}, thread pool: ${server.engine.threadPool})\n`,
    );
    return waitForShutdown(server, config.drainTimeoutMs);
  },
};

/**
 * A start failure as the one line the user sees: an error that states its kind keeps it (so `--gpu metal` on
 * Linux exits with device_unavailable's code); a taken port says which and how to pick another.
 */
function startFailure(error: unknown, host: string, port: number): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "EADDRINUSE") {
    return new CliError(
      `port ${port} on ${host} is already in use (another lori-server?): stop it, or pick another port with ` +
        `--port N (or ${serveEnvVars.port}; --port 0 takes any free port)`,
      ERROR_KINDS.conflict.exitCode,
    );
  }
  if (code === "EACCES") {
    return new CliError(
      `not allowed to listen on ${host}:${port}: ports below 1024 need privileges; pick another with --port N`,
      ERROR_KINDS.forbidden.exitCode,
    );
  }
  if (error instanceof KindedError || (error instanceof Error && "kind" in error)) return error;
  return new CliError((error as Error).message);
}
