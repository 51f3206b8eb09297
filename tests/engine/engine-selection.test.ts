// Which llama.cpp engine a real `lori-server serve` runs, as it says at start and on /metrics. CI has no engine
// build (`npm run build:engine` is opt-in), so there the default run must fall back to node-llama-cpp's prebuilt
// binaries and say so; on a machine with the build it must load it (OpenMP on). LORI_ENGINE=prebuilt forces the
// fallback everywhere, and the fallback serves tokens.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { describe, expect, it } from "vitest";
import { findBuiltEngine } from "../../src/engine/engine-build.js";
import { ERROR_KINDS } from "../../src/errors/error-kinds.js";
import { useTempDir } from "../support/temp-dir.js";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

interface Started {
  url: string;
  log: () => string;
  stop: () => Promise<void>;
}

/** Starts `serve` on the embedded model (empty models dir), one thread, CPU; resolves once it listens. */
async function startServe(modelsDir: string, env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--models-dir", modelsDir, "--gpu", "off", "--log-format", "json"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let seen = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (chunk: Buffer) => {
      seen += String(chunk);
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}) before listening:\n${seen}`)));
  });
  const exited = once(child, "exit");
  return {
    url,
    log: () => seen,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function runServe(env: Record<string, string>, modelsDir: string) {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--models-dir", modelsDir, "--gpu", "off"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  return once(child, "exit").then(([code]) => ({ code: code as number | null, stderr }));
}

async function engineGauge(url: string): Promise<Record<string, string>[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const family = parsePrometheusTextFormat(text).find((f) => f.name === "lori_engine_info");
  expect(family, "lori_engine_info on /metrics").toBeDefined();
  return family!.metrics.map((m) => {
    expect((m as { value: string }).value).toBe("1");
    return (m as { labels: Record<string, string> }).labels;
  });
}

/** The JSON start line `{"event":"engine",...}`. */
function engineLogLine(log: string): Record<string, unknown> {
  const line = log.split("\n").find((l) => l.includes('"event":"engine"'));
  expect(line, `an engine line in the start log:\n${log}`).toBeDefined();
  return JSON.parse(line!) as Record<string, unknown>;
}

describe("engine selection in a real server", () => {
  const dir = useTempDir();
  const built = "manifest" in findBuiltEngine();
  const helperBuilt = existsSync(fileURLToPath(new URL("../../native/build/lori-threadpool.node", import.meta.url)));

  it("LORI_ENGINE=prebuilt serves on node-llama-cpp's prebuilt binaries and reports them", async () => {
    const server = await startServe(dir.path, { LORI_ENGINE: "prebuilt" });
    try {
      const pool = helperBuilt ? "persistent" : "per-compute";
      expect(server.log()).toMatch(new RegExp(`listening on http:\\S+ \\(models: [^;]+; engine: prebuilt, thread pool: ${pool}\\)`));
      expect(engineLogLine(server.log())).toMatchObject({
        build: "prebuilt",
        openmp: false,
        gpu: "cpu",
        reason: "LORI_ENGINE=prebuilt",
        thread_pool: pool,
      });
      const [labels, ...rest] = await engineGauge(server.url);
      expect(rest).toEqual([]);
      expect(labels).toMatchObject({ build: "prebuilt", openmp: "false", gpu: "cpu", thread_pool: pool });
      expect(Number(labels!.threads)).toBeGreaterThanOrEqual(1);
      const response = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: "Once", max_tokens: 8, ignore_eos: true, temperature: 0 }),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as { usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBe(8);
    } finally {
      await server.stop();
    }
  });

  it(`by default runs the engine build when there is one, else falls back to prebuilt (here: ${built ? "built" : "none"})`, async () => {
    const server = await startServe(dir.path, {});
    try {
      const [labels] = await engineGauge(server.url);
      if (built) {
        expect(labels).toMatchObject({ build: "source-openmp", openmp: "true", gpu: "cpu" });
        expect(engineLogLine(server.log())).toMatchObject({ build: "source-openmp", openmp: true });
      } else {
        // the CI path: no `npm run build:engine`, so the prebuilt binaries, with the reason in the start log
        expect(labels).toMatchObject({ build: "prebuilt", openmp: "false", gpu: "cpu" });
        expect(engineLogLine(server.log())).toMatchObject({ build: "prebuilt", reason: "no engine build (npm run build:engine)" });
      }
    } finally {
      await server.stop();
    }
  });

  it("LORI_ENGINE=source without a build, or a bad LORI_ENGINE, is one line and a non-zero exit", async () => {
    const bad = await runServe({ LORI_ENGINE: "fast" }, dir.path);
    expect(bad.code).toBe(ERROR_KINDS.invalid_request.exitCode);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toContain('LORI_ENGINE must be one of auto, source, prebuilt (got "fast")');
    if (!built) {
      const source = await runServe({ LORI_ENGINE: "source" }, dir.path);
      expect(source.code).toBe(ERROR_KINDS.device_unavailable.exitCode);
      expect(source.stderr.trim().split("\n")).toHaveLength(1);
      expect(source.stderr).toContain("LORI_ENGINE=source, but no engine build (npm run build:engine)");
    }
  });

  /** Four concurrent greedy completions; the texts in request order. */
  async function fourCompletions(url: string): Promise<string[]> {
    const prompts = ["Once", "Mia had", "The cat", "One day"];
    const bodies = await Promise.all(
      prompts.map(async (prompt) => {
        const response = await fetch(`${url}/v1/completions`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ prompt, max_tokens: 24, ignore_eos: true, temperature: 0 }),
        });
        expect(response.status).toBe(200);
        return (await response.json()) as { choices: Array<{ text: string }> };
      }),
    );
    return bodies.map((b) => b.choices[0]!.text);
  }

  it("at 2 threads serves the 1-thread texts, with the pool and with LORI_THREAD_POOL=off (the fallback)", async () => {
    const single = await startServe(dir.path, { LORI_THREADS: "1" });
    let expected: string[];
    try {
      expected = await fourCompletions(single.url);
    } finally {
      await single.stop();
    }
    const pooled = await startServe(dir.path, { LORI_THREADS: "2" });
    try {
      expect(engineLogLine(pooled.log())).toMatchObject({ threads: 2, thread_pool: helperBuilt ? "persistent" : "per-compute" });
      expect(await fourCompletions(pooled.url)).toEqual(expected);
    } finally {
      await pooled.stop();
    }
    const fallback = await startServe(dir.path, { LORI_THREADS: "2", LORI_THREAD_POOL: "off" });
    try {
      expect(engineLogLine(fallback.log())).toMatchObject({
        threads: 2,
        thread_pool: "per-compute",
        thread_pool_reason: "LORI_THREAD_POOL=off",
      });
      const [labels] = await engineGauge(fallback.url);
      expect(labels).toMatchObject({ thread_pool: "per-compute", threads: "2" });
      expect(await fourCompletions(fallback.url)).toEqual(expected);
    } finally {
      await fallback.stop();
    }
  });
});
