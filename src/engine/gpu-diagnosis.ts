import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export type LinuxGpuBackend = "cuda" | "vulkan";

/** What each prebuilt GPU backend of node-llama-cpp needs from the machine, in words a user can act on. */
const NEEDS: Record<LinuxGpuBackend, string> = {
  cuda: "the CUDA 13 runtime (libcudart.so.13, libcublas.so.13) and the NVIDIA driver's libcuda.so.1",
  vulkan: "a Vulkan loader (libvulkan.so.1) and a Vulkan driver",
};

/**
 * Why node-llama-cpp's prebuilt `gpu` backend cannot be loaded, naming what is missing: its binary package
 * (`@node-llama-cpp/<platform>-<arch>-<gpu>`) or the shared libraries its `libggml-<gpu>.so` links against and
 * the dynamic loader cannot find (read from `ldd`, which prints "NAME => not found" for each). node-llama-cpp
 * itself only says `NoBinaryFoundError`. Never throws: when nothing more specific is known it says what the
 * backend needs.
 */
export async function explainUnloadableBackend(gpu: LinuxGpuBackend, platform = process.platform, arch = process.arch): Promise<string> {
  const packageName = `@node-llama-cpp/${platform}-${arch}-${gpu}`;
  const packageDir = resolvePackageDir(packageName);
  if (packageDir === undefined) return `${packageName} is not installed (it comes with node-llama-cpp on ${platform} ${arch})`;
  const library = join(packageDir, "bins", `${platform}-${arch}-${gpu}`, `libggml-${gpu}.so`);
  if (!existsSync(library)) return `${packageName} has no libggml-${gpu}.so for this platform`;
  const missing = await librariesNotFound(library);
  if (missing.length > 0) return `${missing.join(", ")} not found (libggml-${gpu}.so needs ${NEEDS[gpu]})`;
  return `its libraries were found, but the backend did not start (it needs ${NEEDS[gpu]}, and a usable device)`;
}

function resolvePackageDir(packageName: string): string | undefined {
  try {
    // The package's entry point is <dir>/dist/index.js.
    return dirname(dirname(createRequire(import.meta.url).resolve(packageName)));
  } catch {
    return undefined;
  }
}

/** Shared libraries `ldd` reports as not found for `library`; empty when there are none or ldd is unavailable. */
export function librariesNotFound(library: string): Promise<string[]> {
  return new Promise((resolve) => {
    execFile("ldd", [library], { timeout: 10_000 }, (error, stdout) => {
      if (error && !stdout) return resolve([]);
      resolve(parseLddNotFound(stdout));
    });
  });
}

/** Names from ldd's "\tlibfoo.so.1 => not found" lines, in order, without repeats. */
export function parseLddNotFound(lddOutput: string): string[] {
  const names: string[] = [];
  for (const line of lddOutput.split("\n")) {
    const match = /^\s*(\S+)\s+=>\s+not found\s*$/.exec(line);
    if (match && !names.includes(match[1]!)) names.push(match[1]!);
  }
  return names;
}
