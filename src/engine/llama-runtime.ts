import os from "node:os";
import { getLlama, type Llama, type LlamaLogLevel } from "node-llama-cpp";

export type GpuChoice = "auto" | "cuda" | "vulkan" | "metal" | "off";

/**
 * Loads llama.cpp's bindings. Never builds from source or downloads at run time: only the prebuilt
 * binaries installed with node-llama-cpp are used. An explicit GPU that is unavailable is an error.
 */
export async function loadLlama(gpu: GpuChoice, logLevel: LlamaLogLevel = "warn" as LlamaLogLevel): Promise<Llama> {
  const common = { build: "never", skipDownload: true, logLevel, progressLogs: false } as const;
  if (gpu === "off") return getLlama({ ...common, gpu: false });
  if (gpu === "auto") return getLlama({ ...common, gpu: "auto" });
  try {
    return await getLlama({ ...common, gpu });
  } catch (error) {
    throw new Error(
      `--gpu ${gpu} was requested but its backend could not be loaded (${(error as Error).message.split("\n")[0]}); ` +
        `use --gpu auto or --gpu off`,
    );
  }
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
