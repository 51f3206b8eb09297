/**
 * llama.cpp's own `llama-server`, built once from the llama.cpp source bundled inside node-llama-cpp (the same
 * llama.cpp release our server runs), CPU only, and started on a free loopback port for side-by-side benches.
 *
 * The build is cached outside the repository, in `<bench cache>/llama.cpp` (LORI_BENCH_CACHE, default
 * os.tmpdir()/lori-server-bench), and skipped when the binary exists. Nothing is downloaded: the source is
 * cloned from node-llama-cpp's git bundle, and the server's web UI (which the build would otherwise try to
 * fetch) is left out. Progress goes to stderr.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { benchCacheDir } from "./bench-model.js";

const bundle = fileURLToPath(new URL("../../node_modules/node-llama-cpp/llama/gitRelease.bundle", import.meta.url));

/** Where the clone and its build live. */
export const llamaCppDir = path.join(benchCacheDir, "llama.cpp");
export const llamaServerBinary = path.join(llamaCppDir, "build", "bin", "llama-server");

/** CMake options: CPU only, native ISA, just the server; no network (no UI download, no curl/openssl). */
export const LLAMA_SERVER_CMAKE_OPTIONS = [
  "-DCMAKE_BUILD_TYPE=Release",
  "-DGGML_NATIVE=ON",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=OFF",
  "-DLLAMA_BUILD_SERVER=ON",
  // The server's web UI is otherwise fetched prebuilt at build time; we need none.
  "-DLLAMA_USE_PREBUILT_UI=OFF",
  "-DLLAMA_BUILD_UI=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DGGML_CUDA=OFF",
  "-DGGML_VULKAN=OFF",
  "-DGGML_METAL=OFF",
];

function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stderr.write(`[llama-server build] $ ${command} ${args.join(" ")}\n`);
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    const forward = (chunk: Buffer) => {
      for (const line of String(chunk).split("\n")) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > 40) tail.shift();
        // cmake --build prints "[ 42%] Building ..." lines: show those as progress, keep the rest for errors.
        if (/^\[\s*\d+%\]/.test(line) || /error/i.test(line)) process.stderr.write(`[llama-server build] ${line}\n`);
      }
    };
    child.stdout!.on("data", forward);
    child.stderr!.on("data", forward);
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")} failed (${code}):\n${tail.join("\n")}`));
    });
  });
}

export interface LlamaServerBuild {
  readonly binary: string;
  /** Seconds spent building in this call; 0 when the cached binary was used. */
  readonly buildSeconds: number;
  readonly commit: string;
}

/** Builds `llama-server` once (several minutes on 2 cores); later calls return the cached binary. */
export async function ensureLlamaServer(jobs = 2): Promise<LlamaServerBuild> {
  const started = performance.now();
  let built = false;
  if (!existsSync(llamaServerBinary)) {
    built = true;
    if (!existsSync(path.join(llamaCppDir, "CMakeLists.txt"))) {
      await rm(llamaCppDir, { recursive: true, force: true });
      await mkdir(benchCacheDir, { recursive: true });
      await run("git", ["clone", "--quiet", bundle, llamaCppDir], benchCacheDir);
    }
    await run("cmake", ["-B", "build", ...LLAMA_SERVER_CMAKE_OPTIONS], llamaCppDir);
    await run("cmake", ["--build", "build", "--config", "Release", "--target", "llama-server", "-j", String(jobs)], llamaCppDir);
    if (!existsSync(llamaServerBinary)) throw new Error(`the build finished but ${llamaServerBinary} is missing`);
  }
  const buildSeconds = built ? (performance.now() - started) / 1000 : 0;
  return { binary: llamaServerBinary, buildSeconds, commit: await gitHead() };
}

async function gitHead(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("git", ["rev-parse", "--short", "HEAD"], { cwd: llamaCppDir, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += String(c)));
    child.once("exit", () => resolve(out.trim() || "unknown"));
    child.once("error", () => resolve("unknown"));
  });
}

/** A free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  server.close();
  await once(server, "close");
  return port;
}

export interface LlamaServerProcess {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `llama-server` with `args` (add -m, -t, --lora ... yourself) on a free loopback port and waits until
 * GET /health answers 200 (it answers 503 while the model loads).
 */
export async function startLlamaServer(binary: string, args: string[], timeoutMs = 120_000): Promise<LlamaServerProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(binary, ["--host", "127.0.0.1", "--port", String(port), "--no-webui", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    log = (log + String(chunk)).slice(-8000);
  });
  let exited: number | null | undefined;
  child.once("exit", (code) => (exited = code));
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (exited !== undefined) throw new Error(`llama-server exited (${exited}) before it was healthy:\n${log}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`llama-server was not healthy within ${timeoutMs} ms:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (exited !== undefined) return;
      const done = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await done;
      clearTimeout(timer);
    },
  };
}

// `npx tsx bench/support/llama-server.ts` only builds (or finds) the binary.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const build = await ensureLlamaServer();
  console.log(JSON.stringify(build));
}
