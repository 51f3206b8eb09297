#!/usr/bin/env node
// Builds the "engine": node-llama-cpp's native addon and llama.cpp/ggml, compiled from the llama.cpp source
// that node-llama-cpp ships as a git bundle, with OpenMP, so ggml reuses its compute threads.
//
// Why: node-llama-cpp's prebuilt CPU binaries are built without OpenMP and its addon attaches no ggml
// thread pool, so ggml creates and joins a fresh set of threads on every graph compute (every decode call).
// An OpenMP build keeps one team of threads alive across computes. See docs/engine.md.
//
// Opt-in (`npm run build:engine`), never part of `npm install`: it compiles ~280 files (minutes on 2 cores).
// Without it the server uses the prebuilt binaries. Offline: the sources come from node-llama-cpp's bundle
// (`llama/gitRelease.bundle`), cmake and the C/C++ compiler from the machine.
//
// Output: node-llama-cpp's own local-build folder (node_modules/node-llama-cpp/llama/localBuilds/<name>), the one
// getLlama() looks up for the same cmake options, plus a manifest (localBuilds/lori-engine.json) that
// src/engine/engine-build.ts reads to decide whether to prefer it. A copy of the build is kept in a cache
// outside node_modules ($LORI_ENGINE_CACHE, default $XDG_CACHE_HOME/lori-server/engine or ~/.cache/...), keyed
// by everything the binary depends on, so after `npm ci` a rerun restores it in a second.
//
// Usage: node scripts/build-engine.mjs [--force] [--optional] [--quiet] [--print-key]
//   --force      rebuild even when an up-to-date build or a cached copy exists
//   --optional   when the engine cannot be built here, print why and exit 0 (the prebuilt binaries stay in use)
//   --quiet      print only errors and the final line
//   --print-key  print the cache key and its inputs as JSON and exit
// Exit codes: 0 built, restored or up to date; 1 cannot build (message on stderr).

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The cmake options of the engine build. src/engine/engine-build.ts passes the same ones to getLlama(). */
export const ENGINE_CMAKE_OPTIONS = { GGML_OPENMP: "ON" };
export const MANIFEST_NAME = "lori-engine.json";
/** node-llama-cpp 3.21.1's name for the build options it records next to every build (prebuilt ones too). */
export const BUILD_METADATA_NAME = "_nlcBuildMetadata.json";
const CMAKE_ENV_PREFIX = "NODE_LLAMA_CPP_CMAKE_OPTION_";

class BuildError extends Error {}

/**
 * What -march=native compiled for: the CPU's instruction-set flags. A build is used only on a CPU with the
 * same fingerprint (a native build on another CPU can die of SIGILL). Same algorithm as
 * src/engine/engine-build.ts (a test checks that both agree).
 */
export function cpuFingerprint(cpuinfo = readCpuinfo()) {
  const flagsLine = cpuinfo.split("\n").find((line) => /^(flags|Features)\s*:/.test(line)) ?? "";
  const flags = flagsLine
    .replace(/^[^:]*:/, "")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .sort();
  return createHash("sha256")
    .update(`${process.arch}\n${flags.join(" ")}`)
    .digest("hex")
    .slice(0, 16);
}

function readCpuinfo() {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

function packageDir(specifier) {
  try {
    // the package's "exports" hide package.json, so resolve the main entry and walk up to package.json
    let dir = dirname(fileURLToPath(import.meta.resolve(specifier)));
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

function run(cmd, argv, options = {}) {
  const result = spawnSync(cmd, argv, { encoding: "utf8", ...options });
  if (result.error) throw new BuildError(`${cmd} could not be started: ${result.error.message}`);
  if (result.status !== 0)
    throw new BuildError(`${cmd} ${argv.join(" ")} failed (exit ${result.status}):\n${result.stderr || result.stdout}`);
  return result.stdout;
}

function toolVersion(cmd) {
  const probe = spawnSync(cmd, ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) return undefined;
  return probe.stdout.split("\n")[0].trim();
}

/** The cmake options node-llama-cpp will see: ours plus any NODE_LLAMA_CPP_CMAKE_OPTION_* in the environment. */
export function effectiveCmakeOptions(env = process.env) {
  const options = { ...ENGINE_CMAKE_OPTIONS };
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith(CMAKE_ENV_PREFIX) && key !== CMAKE_ENV_PREFIX && value !== undefined)
      options[key.slice(CMAKE_ENV_PREFIX.length)] = value;
  }
  return Object.fromEntries(Object.entries(options).sort(([a], [b]) => a.localeCompare(b)));
}

function cacheRoot() {
  if (process.env.LORI_ENGINE_CACHE) return resolve(process.env.LORI_ENGINE_CACHE);
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "lori-server", "engine");
}

/** Everything the built binaries depend on; its hash names the cache entry. */
function keyInputs(nlc) {
  const bundle = join(nlc, "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) throw new BuildError(`${bundle} not found: node-llama-cpp without its source bundle (run npm ci)`);
  const git = toolVersion("git");
  if (!git) throw new BuildError("git is needed to read node-llama-cpp's source bundle");
  const llamaCppCommit = run("git", ["bundle", "list-heads", bundle]).trim().split(/\s+/)[0];
  const nlcVersion = JSON.parse(readFileSync(join(nlc, "package.json"), "utf8")).version;
  const cc = toolVersion(process.env.CC || "cc");
  const cxx = toolVersion(process.env.CXX || "c++");
  return {
    node_llama_cpp: nlcVersion,
    llama_cpp_commit: llamaCppCommit,
    cmake_options: effectiveCmakeOptions(),
    platform: `${process.platform}-${process.arch}`,
    cpu: cpuFingerprint(),
    cc: cc ?? null,
    cxx: cxx ?? null,
  };
}

function keyOf(inputs) {
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 24);
}

/** ELF NEEDED entries of a shared library, without ldd (which runs the loader). */
function neededLibraries(file) {
  const out = run("readelf", ["-d", file]);
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

function findFiles(dir, test) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findFiles(full, test));
    else if (test(entry.name)) found.push(full);
  }
  return found;
}

/** The result folder of a finished build must hold the addon and a CPU backend that links OpenMP's runtime. */
function verifyBuild(folder) {
  if (!existsSync(join(folder, "buildDone.status"))) throw new BuildError(`${folder} has no buildDone.status (the build did not finish)`);
  const release = join(folder, "Release");
  if (!existsSync(release)) throw new BuildError(`${folder} has no Release/ folder`);
  const addons = findFiles(release, (n) => n === "llama-addon.node");
  if (addons.length === 0) throw new BuildError(`no llama-addon.node under ${release}`);
  const cpuLibs = findFiles(release, (n) => /^libggml-cpu.*\.so$/.test(n) || /^libggml\.so$/.test(n));
  const withGomp = cpuLibs.filter((lib) => neededLibraries(lib).some((n) => n.startsWith("libgomp")));
  if (withGomp.length === 0) {
    throw new BuildError(
      `the build links no OpenMP runtime (libgomp not needed by ${cpuLibs.map((f) => f.slice(folder.length + 1)).join(", ") || "any libggml"}); ` +
        "is OpenMP available to the compiler (libgomp, part of gcc)?",
    );
  }
  return { addon: addons[0], openmpLibrary: withGomp[0] };
}

function spawnLogged(cmd, argv, env, quiet) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { env, stdio: ["ignore", quiet ? "pipe" : "inherit", "pipe"] });
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => {
      output += d;
      if (!quiet) process.stderr.write(d);
    });
    child.on("error", (e) => reject(new BuildError(`${cmd}: ${e.message}`)));
    child.on("close", (code) => {
      if (code === 0) resolvePromise();
      else reject(new BuildError(`${cmd} ${argv.join(" ")} failed (exit ${code})${quiet ? `:\n${output.slice(-4000)}` : ""}`));
    });
  });
}

async function main() {
  const args = new Set(process.argv.slice(2));
  const force = args.has("--force");
  const quiet = args.has("--quiet");
  const log = (message) => {
    if (!quiet) console.error(`[build-engine] ${message}`);
  };

  if (process.platform !== "linux") throw new BuildError(`the engine build is set up for Linux only (this is ${process.platform})`);
  const nlc = packageDir("node-llama-cpp");
  if (!nlc) throw new BuildError("node-llama-cpp is not installed (run npm ci)");
  const inputs = keyInputs(nlc);
  const key = keyOf(inputs);
  if (args.has("--print-key")) {
    console.log(JSON.stringify({ key, inputs }, null, 2));
    return;
  }
  const localBuilds = join(nlc, "llama", "localBuilds");
  const manifestPath = join(localBuilds, MANIFEST_NAME);
  const cached = join(cacheRoot(), key);

  const current = readJson(manifestPath);
  if (!force && current?.key === key && existsSync(join(localBuilds, current.folder, "buildDone.status"))) {
    console.log(`[build-engine] up to date: ${current.build} engine in node-llama-cpp/llama/localBuilds/${current.folder}`);
    return;
  }
  if (!force && existsSync(join(cached, MANIFEST_NAME))) {
    const manifest = readJson(join(cached, MANIFEST_NAME));
    const started = performance.now();
    mkdirSync(localBuilds, { recursive: true });
    rmSync(join(localBuilds, manifest.folder), { recursive: true, force: true });
    cpSync(join(cached, manifest.folder), join(localBuilds, manifest.folder), { recursive: true });
    verifyBuild(join(localBuilds, manifest.folder));
    writeJsonAtomic(manifestPath, manifest);
    console.log(
      `[build-engine] restored the ${manifest.build} engine from ${cached} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    return;
  }

  const adopted = !force && findExistingBuild(nlc, localBuilds, inputs);
  if (adopted) {
    log(`adopting node-llama-cpp's finished build with the same options: localBuilds/${adopted}`);
    const manifest = record(localBuilds, adopted, key, inputs, { adopted: true });
    keepCopy(localBuilds, manifest, cached, log);
    console.log(`[build-engine] adopted the existing ${manifest.build} build: node-llama-cpp/llama/localBuilds/${adopted}`);
    return;
  }

  for (const tool of ["cmake", process.env.CC || "cc", process.env.CXX || "c++", "readelf"]) {
    if (!toolVersion(tool))
      throw new BuildError(`"${tool}" is not available; the engine needs cmake (>= 3.19), a C/C++ compiler and binutils`);
  }
  const cli = join(nlc, "dist", "cli", "cli.js");
  const env = { ...process.env };
  for (const [option, value] of Object.entries(ENGINE_CMAKE_OPTIONS)) env[CMAKE_ENV_PREFIX + option] = value;
  const started = performance.now();

  // 1. The sources: node-llama-cpp clones its bundled release into llama/llama.cpp and applies its patches.
  //    GIT_ALLOW_PROTOCOL=file keeps git from reaching anything but the local bundle.
  log(`llama.cpp ${inputs.llama_cpp_commit.slice(0, 12)} from node-llama-cpp's source bundle`);
  await spawnLogged(
    process.execPath,
    [cli, "source", "download", "--skipBuild", "--noUsageExample"],
    { ...env, GIT_ALLOW_PROTOCOL: "file" },
    quiet,
  );
  const sourceSeconds = (performance.now() - started) / 1000;

  // 2. The build: node-llama-cpp's own `source build` (cmake-js), CPU only, with our cmake options; it writes
  //    localBuilds/<folder> and names the folder in llama/lastBuild.json.
  log(`compiling with ${JSON.stringify(inputs.cmake_options)} (minutes on a small machine)`);
  rmSync(join(nlc, "llama", "lastBuild.json"), { force: true });
  await spawnLogged(process.execPath, [cli, "source", "build", "--gpu", "false", "--noUsageExample"], env, quiet);
  const folder = readJson(join(nlc, "llama", "lastBuild.json"))?.folderName;
  if (!folder) throw new BuildError("node-llama-cpp's build finished without naming its folder in llama/lastBuild.json");
  const buildSeconds = (performance.now() - started) / 1000 - sourceSeconds;
  const manifest = record(localBuilds, folder, key, inputs, {
    source_seconds: Math.round(sourceSeconds * 10) / 10,
    build_seconds: Math.round(buildSeconds * 10) / 10,
  });
  keepCopy(localBuilds, manifest, cached, log);
  console.log(
    `[build-engine] built the source-openmp engine in ${manifest.build_seconds} s (+${manifest.source_seconds} s sources): ` +
      `node-llama-cpp/llama/localBuilds/${folder}`,
  );
}

/** Verifies a finished build folder and writes the manifest the server reads. */
function record(localBuilds, folder, key, inputs, extra) {
  const built = verifyBuild(join(localBuilds, folder));
  const manifest = {
    build: "source-openmp",
    key,
    folder,
    ...inputs,
    openmp_library: built.openmpLibrary.slice(join(localBuilds, folder).length + 1),
    built_at: new Date().toISOString(),
    ...extra,
  };
  writeJsonAtomic(join(localBuilds, MANIFEST_NAME), manifest);
  return manifest;
}

/** The cache copy: only what getLlama() loads (Release/ and buildDone.status), not cmake's work tree. */
function keepCopy(localBuilds, manifest, cached, log) {
  const tmp = `${cached}.tmp-${process.pid}`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, manifest.folder), { recursive: true });
    cpSync(join(localBuilds, manifest.folder, "Release"), join(tmp, manifest.folder, "Release"), { recursive: true });
    cpSync(join(localBuilds, manifest.folder, "buildDone.status"), join(tmp, manifest.folder, "buildDone.status"));
    writeFileSync(join(tmp, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
    rmSync(cached, { recursive: true, force: true });
    renameSync(tmp, cached);
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    log(`could not keep a copy in ${cached}: ${error.message} (the build itself is fine)`);
  }
}

/**
 * A finished node-llama-cpp build of the bundled commit with exactly our cmake options (for example from
 * `NODE_LLAMA_CPP_CMAKE_OPTION_GGML_OPENMP=ON npx node-llama-cpp source build --gpu false`), CPU only:
 * the same files this script would produce, so it is adopted instead of compiled again.
 */
export function findExistingBuild(nlc, localBuilds, inputs) {
  if (!existsSync(localBuilds)) return undefined;
  const clone = join(nlc, "llama", "llama.cpp");
  if (!existsSync(join(clone, ".git"))) return undefined;
  const head = spawnSync("git", ["-C", clone, "rev-parse", "HEAD"], { encoding: "utf8" }).stdout?.trim();
  if (head !== inputs.llama_cpp_commit) return undefined;
  for (const entry of readdirSync(localBuilds, { withFileTypes: true })) {
    if (!entry.isDirectory() || !existsSync(join(localBuilds, entry.name, "buildDone.status"))) continue;
    const options = readJson(join(localBuilds, entry.name, "Release", BUILD_METADATA_NAME))?.buildOptions;
    if (options?.gpu !== false || options.platform !== "linux" || options.arch !== process.arch) continue;
    const sorted = Object.fromEntries(Object.entries(options.customCmakeOptions ?? {}).sort(([a], [b]) => a.localeCompare(b)));
    if (JSON.stringify(sorted) === JSON.stringify(inputs.cmake_options)) return entry.name;
  }
  return undefined;
}

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

function writeJsonAtomic(file, value) {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (error) {
    const message = error instanceof BuildError ? error.message : (error?.stack ?? String(error));
    console.error(`[build-engine] cannot build the engine: ${message}`);
    if (process.argv.includes("--optional")) {
      console.error("[build-engine] continuing without it: the server uses node-llama-cpp's prebuilt binaries");
      process.exit(0);
    }
    process.exit(1);
  }
}
