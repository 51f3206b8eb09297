import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Llama } from "node-llama-cpp";
import { KindedError } from "../errors/error-kinds.js";
import { type ThreadPoolMode, threadPoolMode } from "./thread-pool.js";

/**
 * Which llama.cpp binaries to load (env LORI_ENGINE): `auto` prefers the engine built by
 * `npm run build:engine` and falls back to node-llama-cpp's prebuilt binaries; `source` insists on the
 * built engine; `prebuilt` ignores it. See docs/engine.md.
 */
export type EngineChoice = "auto" | "source" | "prebuilt";
export const ENGINE_CHOICES: readonly EngineChoice[] = ["auto", "source", "prebuilt"];

/** The cmake options of the engine build (scripts/build-engine.mjs uses the same ones). */
export const ENGINE_CMAKE_OPTIONS: Readonly<Record<string, string>> = { GGML_OPENMP: "ON" };

/**
 * node-llama-cpp looks a local build up by a folder named after the cmake options it is given, and prefers it
 * over the prebuilt binaries whenever that folder exists (even with `build: "never"`). Options no build was
 * ever made with name a folder that never exists, so the lookup falls through to the prebuilt binaries: this
 * is how "prebuilt" stays prebuilt even when a plain `node-llama-cpp source build` left a folder behind.
 */
const PREBUILT_ONLY_CMAKE_OPTIONS: Readonly<Record<string, string>> = { LORI_ENGINE_PREBUILT_ONLY: "1" };

/** What scripts/build-engine.mjs writes next to the build (node-llama-cpp/llama/localBuilds/lori-engine.json). */
export interface EngineManifest {
  readonly build: string;
  readonly key: string;
  readonly folder: string;
  readonly cpu: string;
  readonly llama_cpp_commit: string;
  readonly cmake_options: Readonly<Record<string, string>>;
}

/** The engine actually loaded, for the start log and `lori_engine_info`. */
export interface EngineInfo {
  /** `source-openmp`: our build; `prebuilt`: node-llama-cpp's binaries; `source`: a local build without OpenMP. */
  readonly build: "source-openmp" | "source" | "prebuilt";
  /** Whether ggml-cpu was compiled with OpenMP (llama.cpp's own system info says `OPENMP = 1`). */
  readonly openmp: boolean;
  readonly gpu: string;
  /** node-llama-cpp's name for the bundled llama.cpp release. */
  readonly llamaCpp: string;
  /** Why the built engine is not in use, when it is not (absent for `source-openmp`). */
  readonly reason?: string;
  /** How compute threads live between decodes (src/engine/thread-pool.ts). */
  readonly threadPool: ThreadPoolMode;
  /** Why contexts get no persistent pool, when they do not (absent for `persistent` and `openmp`). */
  readonly threadPoolReason?: string;
}

export function engineChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): EngineChoice {
  const value = env.LORI_ENGINE;
  if (value === undefined || value === "") return "auto";
  if ((ENGINE_CHOICES as readonly string[]).includes(value)) return value as EngineChoice;
  throw new KindedError("invalid_request", `LORI_ENGINE must be one of ${ENGINE_CHOICES.join(", ")} (got "${value}")`, "invalid_engine");
}

/** node-llama-cpp's package folder; its local builds live under llama/localBuilds. */
function nodeLlamaCppDir(): string | undefined {
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve("node-llama-cpp")));
    while (!existsSync(join(dir, "package.json"))) {
      const up = dirname(dir);
      if (up === dir) return undefined;
      dir = up;
    }
    return dir;
  } catch {
    return undefined;
  }
}

export function engineManifestPath(): string | undefined {
  const dir = nodeLlamaCppDir();
  return dir === undefined ? undefined : join(dir, "llama", "localBuilds", "lori-engine.json");
}

/**
 * The instruction-set flags of this CPU, hashed: the engine is compiled with -march=native, so it may only run
 * on a CPU with the same flags (elsewhere it can die of SIGILL, e.g. an image built on one host and run on
 * another). Same algorithm as scripts/build-engine.mjs.
 */
export function cpuFingerprint(cpuinfo = readCpuinfo(), arch: string = process.arch): string {
  const flagsLine = cpuinfo.split("\n").find((line) => /^(flags|Features)\s*:/.test(line)) ?? "";
  const flags = flagsLine
    .replace(/^[^:]*:/, "")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .sort();
  return createHash("sha256")
    .update(`${arch}\n${flags.join(" ")}`)
    .digest("hex")
    .slice(0, 16);
}

function readCpuinfo(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

/** The built engine if it can be used here, or why not. */
export function findBuiltEngine(manifestPath = engineManifestPath()): { manifest: EngineManifest } | { reason: string } {
  if (manifestPath === undefined || !existsSync(manifestPath)) return { reason: "no engine build (npm run build:engine)" };
  let manifest: EngineManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as EngineManifest;
  } catch (error) {
    return { reason: `unreadable ${manifestPath}: ${(error as Error).message}` };
  }
  if (!existsSync(join(dirname(manifestPath), manifest.folder, "buildDone.status"))) {
    return { reason: `the engine build folder ${manifest.folder} is missing or unfinished (npm run build:engine)` };
  }
  if (manifest.cpu !== cpuFingerprint()) return { reason: "the engine was built for another CPU (npm run build:engine to rebuild)" };
  return { manifest };
}

/** The getLlama() cmake options that select the built engine, or that keep node-llama-cpp on its prebuilt binaries. */
export function engineCmakeOptions(choice: EngineChoice): { options: Readonly<Record<string, string>>; reason?: string } {
  if (choice === "prebuilt") return { options: PREBUILT_ONLY_CMAKE_OPTIONS, reason: "LORI_ENGINE=prebuilt" };
  const found = findBuiltEngine();
  if ("manifest" in found) return { options: ENGINE_CMAKE_OPTIONS };
  if (choice === "source") {
    throw new KindedError("device_unavailable", `LORI_ENGINE=source, but ${found.reason}`, "engine_unavailable");
  }
  return { options: PREBUILT_ONLY_CMAKE_OPTIONS, reason: found.reason };
}

/** Reads what was loaded from the Llama itself, not from what was asked for. */
export function describeEngine(llama: Llama, reason?: string): EngineInfo {
  const openmp = /\bOPENMP = 1\b/.test(llama.systemInfo);
  const build = llama.buildType === "prebuilt" ? "prebuilt" : openmp ? "source-openmp" : "source";
  const gpu = llama.gpu === false ? "cpu" : llama.gpu;
  const pool = threadPoolMode({ openmp, gpu });
  return {
    build,
    openmp,
    gpu,
    llamaCpp: llama.llamaCppRelease.release,
    ...(build === "source-openmp" ? {} : { reason: reason ?? (llama.gpu === false ? "prebuilt binaries" : `GPU backend ${llama.gpu}`) }),
    threadPool: pool.mode,
    ...(pool.reason ? { threadPoolReason: pool.reason } : {}),
  };
}
