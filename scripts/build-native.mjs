#!/usr/bin/env node
// Builds the native LoRI trainer (native/*.cpp -> native/build/lori-train) and the thread-pool helper that
// the server attaches to its contexts (native/threadpool/threadpool.cpp -> native/build/lori-threadpool.node).
//
// It compiles against the ggml shared libraries that node-llama-cpp already installs
// (@node-llama-cpp/<platform>-<arch>/bins/...: libggml-base.so, libggml*.so) and the ggml headers of the
// exact llama.cpp commit bundled in node-llama-cpp (llama/gitRelease.bundle, cloned offline into
// native/build/llama.cpp). No ggml build, no network.
//
// Usage: node scripts/build-native.mjs [--force] [--optional] [--quiet]
//   --force     rebuild even when the sources are unchanged
//   --optional  when the trainer cannot be built here (no compiler, no git, unsupported platform),
//               print why and exit 0 instead of 1 (for npm install hooks)
//   --quiet     print only errors and the final line
// Environment: CXX (default g++).
// Exit codes: 0 built or up to date; 1 cannot build (message on stderr).

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(repoRoot, "native");
const buildDir = join(nativeDir, "build");
const headersDir = join(buildDir, "llama.cpp");
const objDir = join(buildDir, "obj");
const output = join(buildDir, "lori-train");
const stampFile = join(buildDir, "lori-train.stamp");
const threadPoolDir = join(nativeDir, "threadpool");
const threadPoolOutput = join(buildDir, "lori-threadpool.node");
const threadPoolStamp = join(buildDir, "lori-threadpool.stamp");

const args = new Set(process.argv.slice(2));
const force = args.has("--force");
const optional = args.has("--optional");
const quiet = args.has("--quiet");

class BuildError extends Error {}

function log(message) {
  if (!quiet) console.log(`[build-native] ${message}`);
}

/** `fn` run once, its result (or error) kept: both targets need the compiler, the libraries and the headers. */
function once(fn) {
  let result;
  return () => {
    result ??= (() => {
      try {
        return { value: fn() };
      } catch (error) {
        return { error };
      }
    })();
    if ("error" in result) throw result.error;
    return result.value;
  };
}

function run(cmd, argv, options = {}) {
  const result = spawnSync(cmd, argv, { encoding: "utf8", ...options });
  if (result.error) throw new BuildError(`${cmd} could not be started: ${result.error.message}`);
  if (result.status !== 0) {
    throw new BuildError(`${cmd} ${argv.join(" ")} failed (exit ${result.status}):\n${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

function packageDir(specifier) {
  try {
    // the packages' "exports" hide package.json, so resolve the main entry and walk up to package.json
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

/** The folder with node-llama-cpp's prebuilt CPU ggml libraries for this platform. */
const findGgmlLibDir = once(() => {
  if (process.platform !== "linux") {
    throw new BuildError(`the native trainer is built for Linux only (this is ${process.platform})`);
  }
  const name = `${process.platform}-${process.arch}`;
  const pkg = packageDir(`@node-llama-cpp/${name}`);
  const dir = pkg && join(pkg, "bins", name);
  if (!dir || !existsSync(join(dir, "libggml-base.so"))) {
    throw new BuildError(`@node-llama-cpp/${name} with bins/${name}/libggml-base.so is not installed (run npm install)`);
  }
  const files = readdirSync(dir);
  const ggml = files.find((f) => f === "libggml.so") ?? files.find((f) => /^libggml\.v[\d.]+\.so$/.test(f));
  if (!ggml) throw new BuildError(`no libggml.so / libggml.v*.so in ${dir}`);
  const llama = files.find((f) => f === "libllama.so") ?? files.find((f) => /^libllama\.v[\d.]+\.so$/.test(f));
  return { dir, libs: [join(dir, "libggml-base.so"), join(dir, ggml)], llama: llama && join(dir, llama) };
});

/** ggml and llama headers of the exact commit node-llama-cpp bundles, cloned from its git bundle (offline, ~1 s). */
const ensureHeaders = once(() => {
  const pkg = packageDir("node-llama-cpp");
  const bundle = pkg && join(pkg, "llama", "gitRelease.bundle");
  if (!bundle || !existsSync(bundle)) throw new BuildError("node-llama-cpp/llama/gitRelease.bundle not found (run npm install)");
  const git = spawnSync("git", ["--version"], { encoding: "utf8" });
  if (git.error || git.status !== 0) throw new BuildError("git is needed to read the ggml headers from node-llama-cpp's source bundle");
  const head = run("git", ["bundle", "list-heads", bundle]).trim().split(/\s+/)[0];
  const commitFile = join(headersDir, ".lori-commit");
  const include = join(headersDir, "ggml", "include");
  const llamaInclude = join(headersDir, "include");
  const complete = existsSync(join(include, "ggml.h")) && existsSync(join(llamaInclude, "llama.h"));
  if (existsSync(commitFile) && readFileSync(commitFile, "utf8").trim() === head && complete) {
    return { include, llamaInclude, commit: head };
  }
  log(`extracting ggml headers of llama.cpp ${head.slice(0, 12)} from ${relative(repoRoot, bundle)}`);
  rmSync(headersDir, { recursive: true, force: true });
  mkdirSync(buildDir, { recursive: true });
  run("git", ["clone", "--quiet", "--depth", "1", "--no-checkout", bundle, headersDir]);
  run("git", ["-C", headersDir, "checkout", "--quiet", head, "--", "ggml/include", "include"]);
  writeFileSync(commitFile, `${head}\n`);
  return { include, llamaInclude, commit: head };
});

const findCompiler = once(() => {
  const cxx = process.env.CXX || "g++";
  const probe = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    throw new BuildError(`no C++ compiler found ("${cxx}" is not runnable). Install g++ (>= 9, e.g. apt-get install g++) or set CXX.`);
  }
  return { cxx, version: probe.stdout.split("\n")[0] };
});

function hash(...parts) {
  const h = createHash("sha256");
  for (const p of parts) h.update(typeof p === "string" ? p : p).update("\0");
  return h.digest("hex");
}

function spawnAsync(cmd, argv) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "inherit", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (e) => reject(new BuildError(`${cmd}: ${e.message}`)));
    child.on("close", (code) => {
      if (stderr) process.stderr.write(stderr);
      if (code === 0) resolvePromise();
      else reject(new BuildError(`${cmd} ${argv.join(" ")} failed (exit ${code})`));
    });
  });
}

async function build() {
  const started = performance.now();
  const { cxx, version } = findCompiler();
  const ggml = findGgmlLibDir();
  const headers = ensureHeaders();

  const sources = readdirSync(nativeDir)
    .filter((f) => f.endsWith(".cpp"))
    .sort();
  const headerFiles = readdirSync(nativeDir)
    .filter((f) => f.endsWith(".h"))
    .sort();
  if (sources.length === 0) throw new BuildError("no sources in native/");
  // -ffp-contract=off: no FMA contraction (seeded A must be bit-exact); no -ffast-math anywhere.
  const cflags = [
    "-std=c++17",
    "-O2",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-I",
    headers.include,
  ];
  const rpathRel = relative(buildDir, ggml.dir);
  const ldflags = [...ggml.libs, `-Wl,-rpath,${ggml.dir}`, `-Wl,-rpath,$ORIGIN/${rpathRel}`, "-ldl", "-pthread"];
  const headerHash = hash(...headerFiles.map((f) => readFileSync(join(nativeDir, f))));
  const buildKey = hash(
    version,
    cflags.join(" "),
    ldflags.join(" "),
    headers.commit,
    headerHash,
    ...sources.map((f) => readFileSync(join(nativeDir, f))),
  );
  if (!force && existsSync(output) && existsSync(stampFile) && readFileSync(stampFile, "utf8").trim() === buildKey) {
    log(`up to date: ${relative(repoRoot, output)}`);
    return;
  }

  mkdirSync(objDir, { recursive: true });
  const jobs = sources.map((src) => {
    const obj = join(objDir, src.replace(/\.cpp$/, ".o"));
    const key = hash(version, cflags.join(" "), headers.commit, headerHash, readFileSync(join(nativeDir, src)));
    const keyFile = `${obj}.key`;
    const fresh = !force && existsSync(obj) && existsSync(keyFile) && readFileSync(keyFile, "utf8") === key;
    return { src, obj, key, keyFile, fresh };
  });
  const todo = jobs.filter((j) => !j.fresh);
  log(`compiling ${todo.length} of ${jobs.length} files with ${version}`);
  const parallel = Math.max(1, availableParallelism());
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, todo.length) }, async () => {
      while (next < todo.length) {
        const job = todo[next++];
        rmSync(job.keyFile, { force: true });
        await spawnAsync(cxx, [...cflags, "-c", join(nativeDir, job.src), "-o", job.obj]);
        writeFileSync(job.keyFile, job.key);
      }
    }),
  );
  const tmp = `${output}.tmp`;
  await spawnAsync(cxx, [...jobs.map((j) => j.obj), "-o", tmp, ...ldflags]);
  renameSync(tmp, output);
  writeFileSync(stampFile, `${buildKey}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  log(`built ${relative(repoRoot, output)} in ${seconds} s (ggml ${headers.commit.slice(0, 12)}, libs ${ggml.dir})`);
}

/** node-addon-api's headers: a dependency of node-llama-cpp, which compiles its own addon with them. */
function findNodeAddonApi() {
  const pkg = packageDir("node-llama-cpp");
  try {
    const dir = pkg && dirname(createRequire(join(pkg, "package.json")).resolve("node-addon-api/package.json"));
    if (dir && existsSync(join(dir, "napi.h"))) return dir;
  } catch {
    // reported below
  }
  throw new BuildError("node-addon-api (a dependency of node-llama-cpp) is not installed");
}

/** Node's own C headers (node_api.h), next to the running node binary as installers put them. */
function findNodeHeaders() {
  const dir = resolve(process.execPath, "..", "..", "include", "node");
  if (!existsSync(join(dir, "node_api.h"))) {
    throw new BuildError(`Node's headers are not installed (no ${join(dir, "node_api.h")})`);
  }
  return dir;
}

/**
 * The thread-pool helper: one small addon compiled against node-llama-cpp's own addon headers (for the layout
 * of its context object) and linked to the llama/ggml libraries node-llama-cpp loads (docs/engine.md).
 */
async function buildThreadPool() {
  const started = performance.now();
  const { cxx, version } = findCompiler();
  const ggml = findGgmlLibDir();
  if (!ggml.llama) throw new BuildError(`no libllama.so / libllama.v*.so in ${ggml.dir}`);
  const headers = ensureHeaders();
  const addonApi = findNodeAddonApi();
  const nodeHeaders = findNodeHeaders();
  const addonHeaders = join(packageDir("node-llama-cpp"), "llama", "addon");
  const source = join(threadPoolDir, "threadpool.cpp");
  const cflags = [
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    "-fexceptions",
    // node-llama-cpp's addon is compiled with NAPI_VERSION=7; the same headers give the same object layout
    "-DNAPI_VERSION=7",
    "-DNAPI_DISABLE_CPP_EXCEPTIONS",
    "-Wall",
    "-Wno-unused-parameter",
    ...[nodeHeaders, addonApi, addonHeaders, headers.llamaInclude, headers.include].flatMap((dir) => ["-I", dir]),
  ];
  const ldflags = [ggml.llama, ...ggml.libs, `-Wl,-rpath,${ggml.dir}`, "-pthread"];
  const buildKey = hash(
    version,
    cflags.join(" "),
    ldflags.join(" "),
    headers.commit,
    readFileSync(source),
    ...readdirSync(addonHeaders)
      .filter((f) => f.endsWith(".h"))
      .sort()
      .map((f) => readFileSync(join(addonHeaders, f))),
  );
  if (!force && existsSync(threadPoolOutput) && existsSync(threadPoolStamp) && readFileSync(threadPoolStamp, "utf8").trim() === buildKey) {
    log(`up to date: ${relative(repoRoot, threadPoolOutput)}`);
    return;
  }
  mkdirSync(buildDir, { recursive: true });
  const tmp = `${threadPoolOutput}.tmp`;
  await spawnAsync(cxx, [...cflags, source, "-o", tmp, ...ldflags]);
  renameSync(tmp, threadPoolOutput);
  writeFileSync(threadPoolStamp, `${buildKey}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  log(`built ${relative(repoRoot, threadPoolOutput)} in ${seconds} s`);
}

const targets = [
  { name: "the native trainer", build, without: "`lori-server train` will not work" },
  { name: "the thread-pool helper", build: buildThreadPool, without: "the server runs without a persistent thread pool" },
];
let failed = false;
for (const target of targets) {
  try {
    await target.build();
  } catch (error) {
    const message = error instanceof BuildError ? error.message : (error?.stack ?? String(error));
    console.error(`[build-native] cannot build ${target.name}: ${message}`);
    if (optional) console.error(`[build-native] continuing without it (${target.without} until \`npm run build:native\` succeeds)`);
    failed = true;
  }
}
process.exit(failed && !optional ? 1 : 0);
