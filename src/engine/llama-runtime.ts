import os from "node:os";
import { getLlama, type Llama, type LlamaLogLevel } from "node-llama-cpp";
import { KindedError } from "../errors/error-kinds.js";
import { explainUnloadableBackend } from "./gpu-diagnosis.js";

export type GpuChoice = "auto" | "cuda" | "vulkan" | "metal" | "off";

/**
 * Loads llama.cpp's bindings. Never builds from source or downloads at run time: only the prebuilt
 * binaries installed with node-llama-cpp are used. An explicit GPU that is unavailable is an error
 * (kind device_unavailable), never a silent CPU fallback: node-llama-cpp 3.21.1 answers `gpu: "metal"` on
 * Linux with a CPU build and no error, so the result is checked as well as the call.
 */
export async function loadLlama(
  gpu: GpuChoice,
  logLevel: LlamaLogLevel = "warn" as LlamaLogLevel,
  platform: NodeJS.Platform = process.platform,
): Promise<Llama> {
  const common = { build: "never", skipDownload: true, logLevel, progressLogs: false } as const;
  if (gpu === "off") return getLlama({ ...common, gpu: false });
  if (gpu === "auto") return getLlama({ ...common, gpu: "auto" });
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
 * Default thread count. Measured on a 2-core machine: node-llama-cpp decoded 4.7x slower with 2 threads
 * than with 1, because llama.cpp's spinning workers compete with Node's own thread for the cores. So we
 * leave one core to Node and, on bigger machines, cap at the physical-core estimate.
 */
export function defaultThreadCount(cpuCount = os.availableParallelism()): number {
  if (cpuCount <= 2) return 1;
  return Math.max(1, Math.min(cpuCount - 1, Math.floor(cpuCount / 2) + 1));
}
