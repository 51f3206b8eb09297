import { z } from "zod";
import { LOG_FORMATS } from "../util/logger.js";

/** `serve` settings after merging flags over environment variables over defaults. */
export const serveConfigSchema = z.object({
  models: z.array(z.string().min(1)).default([]).describe("GGUF files, `name=PATH` to alias; empty = the demo model (lori-tiny fallback)"),
  modelsDir: z.string().min(1).default("models"),
  adaptersDir: z.string().min(1).default("adapters"),
  host: z.string().min(1).default("127.0.0.1"),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  gpu: z.enum(["auto", "cuda", "vulkan", "metal", "off"]).default("auto"),
  gpuLayers: z.union([z.enum(["auto", "max"]), z.coerce.number().int().min(0)]).default("auto"),
  threads: z.union([z.literal("auto"), z.coerce.number().int().min(1).max(1024)]).default("auto"),
  contextSize: z.coerce.number().int().min(64).max(1_048_576).default(4096),
  parallel: z.coerce.number().int().min(1).max(256).default(4),
  maxLanes: z.union([z.literal("auto"), z.coerce.number().int().min(1).max(256)]).default("auto"),
  maxAdapters: z.coerce.number().int().min(1).max(100_000).default(16),
  /** 1 GiB: files a lane holds are never evicted, so this bounds only the idle cache (a few 7B-class sets). */
  compiledCacheMb: z.coerce.number().int().min(1).max(1_048_576).default(1024),
  mergedLanesMb: z.coerce
    .number()
    .int()
    .min(0)
    .max(1_048_576)
    .default(0)
    .describe("memory budget of merged-weight lanes for hot adapter sets, in MiB (0 = off; docs/merged-lanes.md)"),
  mergedLanesWindow: z.coerce
    .number()
    .int()
    .min(2)
    .max(100_000)
    .default(64)
    .describe("admitted requests a set's traffic share is taken over"),
  mergedLanesShare: z.coerce.number().gt(0).max(1).default(0.5).describe("share of the window that makes a set hot (0 < share <= 1)"),
  mergedLanesMinRequests: z.coerce
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(16)
    .describe("requests in the window a hot set needs at least"),
  agingMs: z.coerce.number().int().min(0).default(250),
  batchWaitMs: z.coerce.number().min(0).max(100).default(1),
  // 0: pool threads sleep as soon as a compute ends (llama.cpp's tools default to 50, spinning for a while):
  // here Node's main thread needs the other core between two decodes (docs/engine.md)
  poll: z.coerce.number().int().min(0).max(100).default(0),
  // as llama.cpp's own default: llama.cpp enables it where the backend supports it (docs/engine.md)
  flashAttention: z.enum(["auto", "on", "off"]).default("auto"),
  adaptersPollMs: z.coerce.number().int().min(0).default(1000),
  adapterRoots: z.array(z.string().min(1)).default([]),
  keysFile: z.string().optional(),
  maxQueue: z.coerce.number().int().min(0).max(100_000).default(64),
  apiKeys: z.array(z.string().min(1)).default([]),
  chatTemplate: z.string().optional().describe("Jinja template text, or a path to a file holding one"),
  maxBodyBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .default(8 * 1024 * 1024),
  drainTimeoutMs: z.coerce.number().int().min(0).default(30_000),
  headerTimeoutMs: z.coerce.number().int().min(100).default(10_000).describe("time a client may take to send the request headers"),
  bodyTimeoutMs: z.coerce.number().int().min(100).default(60_000).describe("time a client may take to send the whole request"),
  metricsMaxAdapterSets: z.coerce.number().int().min(1).max(10_000).default(64),
  publicMetrics: z
    .preprocess((v) => (v === "true" || v === "1" ? true : v === "false" || v === "0" ? false : v), z.boolean())
    .default(false),
  noUi: z
    .union([z.boolean(), z.enum(["1", "true", "0", "false"]).transform((v) => v === "1" || v === "true")])
    .default(false)
    .describe("do not serve the browser playground at / and /ui/"),
  logRequests: z.boolean().default(true),
  logFormat: z.enum(LOG_FORMATS).default("auto"),
  dataDir: z.string().min(1).default("data").describe("uploaded files and fine-tuning jobs"),
  maxFileMb: z.coerce.number().positive().max(1_000_000).default(100).describe("size limit of an uploaded file, in MiB"),
  maxTrainingJobs: z.coerce.number().int().min(0).max(64).default(1).describe("fine-tuning jobs that train at once (0 = none start)"),
  trainingThreads: z
    .union([z.literal("auto"), z.coerce.number().int().min(1).max(1024)])
    .default("auto")
    .describe("CPU threads of each training job (auto: half the cores, at least 1)"),
});

export type ServeConfig = z.infer<typeof serveConfigSchema>;

/** Checks between fields, phrased like a single field's refusal. */
function crossFieldProblem(config: ServeConfig): string | undefined {
  if (config.mergedLanesMinRequests > config.mergedLanesWindow) {
    return `invalid --merged-lanes-min-requests / ${serveEnvVars.mergedLanesMinRequests}: ${config.mergedLanesMinRequests} is more than --merged-lanes-window (${config.mergedLanesWindow})`;
  }
  return undefined;
}

/** Each flag's environment variable; list-valued ones are comma-separated. */
export const serveEnvVars = {
  models: "LORI_MODEL",
  modelsDir: "LORI_MODELS_DIR",
  adaptersDir: "LORI_ADAPTERS_DIR",
  host: "LORI_HOST",
  port: "LORI_PORT",
  gpu: "LORI_GPU",
  gpuLayers: "LORI_GPU_LAYERS",
  threads: "LORI_THREADS",
  contextSize: "LORI_CONTEXT_SIZE",
  parallel: "LORI_PARALLEL",
  maxLanes: "LORI_MAX_LANES",
  maxAdapters: "LORI_MAX_ADAPTERS",
  compiledCacheMb: "LORI_COMPILED_CACHE_MB",
  mergedLanesMb: "LORI_MERGED_LANES_MB",
  mergedLanesWindow: "LORI_MERGED_LANES_WINDOW",
  mergedLanesShare: "LORI_MERGED_LANES_SHARE",
  mergedLanesMinRequests: "LORI_MERGED_LANES_MIN_REQUESTS",
  agingMs: "LORI_AGING_MS",
  batchWaitMs: "LORI_BATCH_WAIT_MS",
  poll: "LORI_POLL",
  flashAttention: "LORI_FLASH_ATTENTION",
  adaptersPollMs: "LORI_ADAPTERS_POLL_MS",
  adapterRoots: "LORI_ADAPTER_ROOT",
  keysFile: "LORI_KEYS_FILE",
  maxQueue: "LORI_MAX_QUEUE",
  apiKeys: "LORI_API_KEY",
  chatTemplate: "LORI_CHAT_TEMPLATE",
  maxBodyBytes: "LORI_MAX_BODY_BYTES",
  drainTimeoutMs: "LORI_DRAIN_TIMEOUT_MS",
  headerTimeoutMs: "LORI_HEADER_TIMEOUT_MS",
  bodyTimeoutMs: "LORI_BODY_TIMEOUT_MS",
  metricsMaxAdapterSets: "LORI_METRICS_MAX_ADAPTER_SETS",
  publicMetrics: "LORI_PUBLIC_METRICS",
  noUi: "LORI_NO_UI",
  logFormat: "LORI_LOG_FORMAT",
  dataDir: "LORI_DATA_DIR",
  maxFileMb: "LORI_MAX_FILE_MB",
  maxTrainingJobs: "LORI_MAX_TRAINING_JOBS",
  trainingThreads: "LORI_TRAINING_THREADS",
} as const satisfies Partial<Record<keyof ServeConfig, string>>;

const listKeys = new Set<keyof ServeConfig>(["models", "apiKeys", "adapterRoots"]);

/** The only place that reads the environment. Flags win over env vars. */
export function resolveServeConfig(flags: Partial<Record<keyof ServeConfig, unknown>>, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const merged: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(serveEnvVars) as Array<[keyof ServeConfig, string]>) {
    const raw = env[variable];
    if (raw === undefined || raw === "") continue;
    merged[key] = listKeys.has(key)
      ? raw
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : raw;
  }
  for (const [key, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    merged[key] = value;
  }
  const parsed = serveConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? "");
    const variable = serveEnvVars[key as keyof typeof serveEnvVars];
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new Error(`invalid ${flag}${variable ? ` / ${variable}` : ""}: ${issue.message}`);
  }
  const problem = crossFieldProblem(parsed.data);
  if (problem) throw new Error(problem);
  return parsed.data;
}
