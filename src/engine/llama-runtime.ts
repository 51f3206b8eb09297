import os from "node:os";
import { getLlama, type Llama, type LlamaLogLevel } from "node-llama-cpp";
import { KindedError } from "../errors/error-kinds.js";
import { describeEngine, type EngineChoice, engineChoiceFromEnv, engineCmakeOptions, type EngineInfo } from "./engine-build.js";
import { explainUnloadableBackend } from "./gpu-diagnosis.js";
import type { ThreadPoolMode } from "./thread-pool.js";

export type GpuChoice = "auto" | "cuda" | "vulkan" | "metal" | "off";

/**
 * Loads llama.cpp's bindings. Never builds from source or downloads at run time: it loads the engine built
 * ahead of time by `npm run build:engine` when there is one for this CPU (and `engine` allows it), otherwise
 * the prebuilt binaries installed with node-llama-cpp (docs/engine.md). An explicit GPU that is unavailable is an error
 * (kind device_unavailable), never a silent CPU fallback: node-llama-cpp 3.21.1 answers `gpu: "metal"` on
 * Linux with a CPU build and no error, so the result is checked as well as the call.
 */
export async function loadLlama(
  gpu: GpuChoice,
  logLevel: LlamaLogLevel = "warn" as LlamaLogLevel,
  platform: NodeJS.Platform = process.platform,
  engine: EngineChoice = engineChoiceFromEnv(),
): Promise<Llama> {
  const { options: cmakeOptions, reason } = engineCmakeOptions(engine);
  const common = { build: "never", skipDownload: true, logLevel, progressLogs: false, cmakeOptions } as const;
  if (gpu === "off") return checkEngine(await getLlama({ ...common, gpu: false }), engine, reason);
  if (gpu === "auto") return checkEngine(await getLlama({ ...common, gpu: "auto" }), engine, reason);
  if (gpu === "metal" && platform !== "darwin") {
    throw deviceUnavailable(gpu, `Metal exists only on macOS (this is ${platform})`);
  }
  let llama: Llama;
  try {
    llama = await getLlama({ ...common, gpu });
  } catch (error) {
    const reason = gpu === "metal" ? (error as Error).message.split("\n")[0]! : await explainUnloadableBackend(gpu);
    throw deviceUnavailable(gpu, reason);
  }
  if (llama.gpu !== gpu) {
    await llama.dispose();
    throw deviceUnavailable(gpu, `node-llama-cpp loaded ${llama.gpu === false ? "its CPU build" : `its ${llama.gpu} build`} instead`);
  }
  return checkEngine(llama, engine, reason);
}

const engines = new WeakMap<Llama, EngineInfo>();

/** Which engine a Llama is (for the start log and `lori_engine_info`); works for Llamas loaded elsewhere too. */
export function engineInfo(llama: Llama): EngineInfo {
  return engines.get(llama) ?? describeEngine(llama);
}

/** Records what was loaded, and why it is not the built engine when one was asked for. */
async function checkEngine(llama: Llama, engine: EngineChoice, reason: string | undefined): Promise<Llama> {
  let why = reason;
  if (why === undefined && llama.buildType === "prebuilt") {
    why =
      llama.gpu === false
        ? "the engine build did not load (node-llama-cpp logged why) and the prebuilt binaries were used"
        : `the ${llama.gpu} backend comes prebuilt (the engine build is CPU-only)`;
  }
  const info = describeEngine(llama, why);
  if (engine === "source" && info.build !== "source-openmp") {
    await llama.dispose();
    throw new KindedError(
      "device_unavailable",
      `LORI_ENGINE=source, but ${why ?? "the loaded engine has no OpenMP"}`,
      "engine_unavailable",
    );
  }
  engines.set(llama, info);
  return llama;
}

function deviceUnavailable(gpu: GpuChoice, reason: string): KindedError {
  return new KindedError(
    "device_unavailable",
    `--gpu ${gpu} cannot be used: ${reason}; use --gpu auto (CUDA, then Vulkan, then CPU) or --gpu off`,
    "device_unavailable",
    "gpu",
  );
}

/**
 * Default thread count (`--threads auto`; docs/engine.md, "Speed and --threads auto").
 *
 * On 2 cores or fewer it depends on how threads live between decodes. node-llama-cpp's prebuilt binaries as
 * they are (`per-compute`) decoded 4.7x slower with 2 threads than with 1 (a fresh ggml thread pool per
 * decode), and the OpenMP build still decoded fastest with 1 (302 vs 218 tokens/s: its spinning team competes
 * with Node's main thread for the second core), so those get 1. With our persistent pool (`persistent`:
 * threads sleep at once after each compute by default, and lanes share the cores decode by decode) 2 threads
 * decoded faster than 1 in process (median 269 vs 223 tokens/s, 5 rounds) and 4 busy lanes as fast (376 vs
 * 399), so it gets all the cores; each decode then takes its share (`decodeThreads`: a 1-token batch decodes
 * on 1 of 2 cores). On bigger machines: all cores but one, capped at the physical-core estimate.
 */
export function defaultThreadCount(cpuCount = os.availableParallelism(), threadPool: ThreadPoolMode = "per-compute"): number {
  if (cpuCount <= 2) return threadPool === "persistent" ? cpuCount : 1;
  return Math.max(1, Math.min(cpuCount - 1, Math.floor(cpuCount / 2) + 1));
}
