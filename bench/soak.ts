/**
 * Reliability soak: many concurrent requests over mixed adapter sets, a share of streams aborted by the
 * client, while adapters are merged, replaced (atomically and by a plain file copy) and deleted underneath.
 * Prints one JSON report: status counts (no 5xx allowed), server RSS and open file descriptors over time
 * (flat after warm-up), the compiled-adapter cache's disk use against its budget, and the /metrics size.
 *
 *   npm run bench:soak -- [--requests 600] [--concurrency 24] [--abort-share 0.2] [--cache-mb 8]
 *
 * Runs `lori-server serve` (dist/, so build first) on the committed demo model with a copy of its adapters
 * in a temporary store. Exit code 1 when a check fails.
 */
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { loadavg, tmpdir, cpus } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startServerProcess } from "./support/server-process.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "600" },
    concurrency: { type: "string", default: "24" },
    "abort-share": { type: "string", default: "0.2" },
    "cache-mb": { type: "string", default: "8" },
    seed: { type: "string", default: "1" },
  },
});
const totalRequests = Number(values.requests);
const concurrency = Number(values.concurrency);
const abortShare = Number(values["abort-share"]);
const cacheMb = Number(values["cache-mb"]);
/** The /metrics label budget the run sets; the mix makes far more distinct sets than this. */
const maxSets = 16;

// A seeded PRNG keeps the request mix the same from run to run.
let state = Number(values.seed) >>> 0 || 1;
function random(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

const DEMO_ADAPTERS = ["math", "code", "nlu", "safety"];
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await dirBytes(full);
    else if (entry.isFile()) total += (await stat(full).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

async function processStats(pid: number): Promise<{ rssMb: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  return { rssMb: rssKb / 1024, fds };
}

interface Outcome {
  status: number;
  code: string | null;
  aborted: boolean;
  stream: boolean;
}

async function main(): Promise<void> {
  const load = loadavg();
  const cores = cpus().length;
  // Timings are not the point here, but a busy machine stretches the run and hides leaks behind noise.
  if (load[0]! > cores * 0.75) {
    process.stderr.write(`soak: load average ${load[0]!.toFixed(2)} on ${cores} cores: the machine is busy; results are still reported\n`);
  }
  const store = await mkdtemp(path.join(tmpdir(), "lori-soak-"));
  for (const name of DEMO_ADAPTERS) await cp(path.join(repoRoot, "adapters", name), path.join(store, name), { recursive: true });
  const spare = await mkdtemp(path.join(tmpdir(), "lori-soak-spare-"));
  for (const name of DEMO_ADAPTERS) await cp(path.join(repoRoot, "adapters", name), path.join(spare, name), { recursive: true });

  const server = await startServerProcess(
    [
      "--adapters-dir",
      store,
      "--metrics-max-adapter-sets",
      String(maxSets),
      "--threads",
      "1",
      "--parallel",
      "4",
      "--max-lanes",
      "4",
      "--adapters-poll-ms",
      "200",
      "--context-size",
      "512",
    ],
    [],
    { LORI_COMPILED_CACHE_MB: String(cacheMb) },
  );
  const url = server.url;
  const outcomes: Outcome[] = [];
  const samples: Array<{
    at: number;
    done: number;
    rssMb: number;
    fds: number;
    compiledMb: number;
    metricsLines: number;
    setLabels: number;
  }> = [];
  const churn = { merged: 0, deleted: 0, replacedAtomic: 0, replacedCopy: 0, failed5xx: 0, statuses: {} as Record<string, number> };
  const merged: string[] = [];
  let finished = false;
  const started = performance.now();

  async function sample(): Promise<void> {
    const { rssMb, fds } = await processStats(server.pid);
    const compiledMb = (await dirBytes(path.join(store, ".compiled"))) / 1048576;
    const metrics = await fetch(`${url}/metrics`).then((r) => r.text());
    const setLabels = new Set([...metrics.matchAll(/adapter_set="([^"]*)"/g)].map((m) => m[1])).size;
    samples.push({
      at: Math.round(performance.now() - started),
      done: outcomes.length,
      rssMb,
      fds,
      compiledMb,
      metricsLines: metrics.split("\n").length,
      setLabels,
    });
  }

  function requestBody(): { route: string; body: Record<string, unknown>; stream: boolean } {
    const names = [...DEMO_ADAPTERS, ...merged];
    const shape = random();
    let adapter: unknown;
    let model: string | undefined;
    if (shape < 0.15) adapter = undefined;
    else if (shape < 0.45) adapter = [pick(names)];
    else if (shape < 0.75)
      adapter = [
        { name: "math", weight: Math.round(random() * 100) / 100 + 0.01 },
        { name: pick(["safety", "code", "nlu"]), weight: 1 },
      ];
    else if (shape < 0.9) adapter = [pick(["code", "nlu"]), "safety"];
    else model = pick(names);
    const stream = random() < 0.6;
    const chat = random() < 0.3;
    const common = {
      max_tokens: 4 + Math.floor(random() * 20),
      temperature: 0,
      stream,
      ...(adapter ? { adapter } : {}),
      ...(model ? { model } : {}),
    };
    return chat
      ? { route: "/v1/chat/completions", body: { ...common, messages: [{ role: "user", content: "What is 3 + 4?" }] }, stream }
      : {
          route: "/v1/completions",
          body: { ...common, prompt: "Q: Tom has 3 balls and buys 4 more. How many balls does Tom have?\nA:" },
          stream,
        };
  }

  async function oneRequest(): Promise<Outcome> {
    const { route, body, stream } = requestBody();
    const abort = stream && random() < abortShare;
    const controller = new AbortController();
    try {
      const response = await fetch(`${url}${route}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) {
        const json = (await response.json().catch(() => ({}))) as { error?: { code?: string } };
        return { status: response.status, code: json.error?.code ?? null, aborted: false, stream };
      }
      if (abort) {
        const reader = response.body!.getReader();
        await reader.read();
        controller.abort();
        return { status: response.status, code: null, aborted: true, stream };
      }
      const text = await response.text();
      // A failure after streaming began is an error event inside a 200 stream: count it as the 5xx it is.
      if (stream && /"error"\s*:/.test(text)) return { status: 500, code: "stream_error", aborted: false, stream };
      if (stream && !text.trimEnd().endsWith("data: [DONE]")) return { status: 500, code: "stream_truncated", aborted: false, stream };
      return { status: response.status, code: null, aborted: false, stream };
    } catch (error) {
      if (abort) return { status: 200, code: null, aborted: true, stream };
      return { status: 0, code: (error as Error).message, aborted: false, stream };
    }
  }

  async function worker(): Promise<void> {
    while (outcomes.length + inFlight < totalRequests) {
      inFlight++;
      const outcome = await oneRequest();
      inFlight--;
      outcomes.push(outcome);
    }
  }
  let inFlight = 0;

  async function churnLoop(): Promise<void> {
    let step = 0;
    while (!finished) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      step++;
      const action = step % 4;
      try {
        if (action === 0) {
          const name = `m${step}`;
          const response = await fetch(`${url}/adapters/merge`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({
              method: "cat",
              name,
              adapters: [
                { name: pick(["math", "code"]), weight: 0.7 },
                { name: pick(["nlu", "safety"]), weight: 0.5 },
              ],
            }),
          });
          churn.statuses[`merge ${response.status}`] = (churn.statuses[`merge ${response.status}`] ?? 0) + 1;
          if (response.status >= 500) churn.failed5xx++;
          if (response.status === 201) {
            merged.push(name);
            churn.merged++;
          }
        } else if (action === 1 && merged.length > 2) {
          const name = merged.shift()!;
          const response = await fetch(`${url}/adapters/${name}`, { method: "DELETE" });
          churn.statuses[`delete ${response.status}`] = (churn.statuses[`delete ${response.status}`] ?? 0) + 1;
          if (response.status >= 500) churn.failed5xx++;
          churn.deleted++;
        } else if (action === 2) {
          // Atomic replace: a complete directory renamed into place (the old one moved aside first).
          const name = pick(["code", "nlu"]);
          const staging = path.join(store, `.staging-${step}`);
          await cp(path.join(spare, pick(DEMO_ADAPTERS)), staging, { recursive: true });
          const aside = path.join(store, `.aside-${step}`);
          await rename(path.join(store, name), aside);
          await rename(staging, path.join(store, name));
          await rm(aside, { recursive: true, force: true });
          churn.replacedAtomic++;
        } else if (action === 3) {
          // Plain copy over the live files, as `cp` does: the poller may see a half-written adapter.
          const from = pick(DEMO_ADAPTERS);
          await mkdir(path.join(store, "safety"), { recursive: true });
          for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
            await copyFile(path.join(spare, from, file), path.join(store, "safety", file));
          }
          churn.replacedCopy++;
        }
      } catch (error) {
        churn.statuses[`error ${(error as Error).message.slice(0, 60)}`] =
          (churn.statuses[`error ${(error as Error).message.slice(0, 60)}`] ?? 0) + 1;
      }
    }
  }

  await sample();
  const sampler = setInterval(() => void sample().catch(() => undefined), 1000);
  const churning = churnLoop();
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  finished = true;
  await churning;
  clearInterval(sampler);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await sample();
  const durationS = (performance.now() - started) / 1000;
  await server.stop();
  await rm(store, { recursive: true, force: true });
  await rm(spare, { recursive: true, force: true });

  const statusCounts: Record<string, number> = {};
  for (const o of outcomes) {
    const key = o.aborted ? "aborted" : `${o.status}${o.code ? ` ${o.code}` : ""}`;
    statusCounts[key] = (statusCounts[key] ?? 0) + 1;
  }
  const fiveXx = outcomes.filter((o) => o.status >= 500 || o.status === 0).length + churn.failed5xx;
  // Warm-up: the first quarter of the requests (lanes open, the first sets compile).
  const warm = samples.filter((s) => s.done >= totalRequests * 0.25);
  const series = (pick: (s: (typeof samples)[number]) => number) => (warm.length > 0 ? warm : samples).map(pick);
  const rss = series((s) => s.rssMb);
  const fds = series((s) => s.fds);
  const compiled = samples.map((s) => s.compiledMb);
  const metricsLines = samples.map((s) => s.metricsLines);
  const growth = (values: number[]) => (values.length < 2 ? 1 : Math.max(...values) / Math.max(1e-9, values[0]!));
  const round = (v: number) => Math.round(v * 100) / 100;
  const report = {
    bench: "soak",
    load_average: load.map(round),
    cores,
    requests: outcomes.length,
    concurrency,
    duration_s: round(durationS),
    aborted_streams: outcomes.filter((o) => o.aborted).length,
    status_counts: statusCounts,
    churn,
    five_xx: fiveXx,
    rss_mb: { after_warmup: round(rss[0] ?? 0), end: round(rss.at(-1) ?? 0), max: round(Math.max(...rss)), growth: round(growth(rss)) },
    open_fds: { after_warmup: fds[0] ?? 0, end: fds.at(-1) ?? 0, max: Math.max(...fds) },
    compiled_cache_mb: { budget: cacheMb, max: round(Math.max(...compiled)), end: round(compiled.at(-1) ?? 0) },
    metrics_lines: { first: metricsLines[0], max: Math.max(...metricsLines), end: metricsLines.at(-1) },
    metrics_adapter_set_labels: { limit: maxSets, max: Math.max(...samples.map((s) => s.setLabels)) },
    checks: {
      no_5xx: fiveXx === 0,
      rss_flat: growth(rss) < 1.25,
      fds_flat: Math.max(...fds) - (fds[0] ?? 0) <= 8,
      compiled_within_budget: Math.max(...compiled) <= cacheMb,
      // The limit's sets, plus the base model ("") and "(other)".
      metrics_bounded: Math.max(...samples.map((s) => s.setLabels)) <= maxSets + 2,
    },
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = Object.values(report.checks).every(Boolean) ? 0 : 1;
}

await main();
