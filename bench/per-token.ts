/**
 * bench/per-token: how long the server's main JS thread is busy per generated token (sampling round trips,
 * detokenisation, stop-string matching, JSON and SSE writes), from a V8 CPU profile of `lori-server serve`.
 *
 *   npm run bench:per-token > per-token.json
 *
 * Each round starts the server from source (tsx, no build needed) under `node --cpu-prof` on the committed demo
 * model (4-layer llama, byte tokenizer: its decode is cheap, so the JS work per token stands out), one engine
 * thread, `--parallel 4`, and runs a fixed streamed workload: chat and completions, 1 and 4 concurrent clients,
 * with and without stop strings (ones that never match, so the matcher works on every token), greedy,
 * `ignore_eos`, BENCH_TOKENS tokens per request, plus one client asking for n=4 choices. A full unmeasured pass
 * warms the server up first. Each scenario is timed with the clock V8 stamps samples with, so
 * its samples are summarised on their own. Busy = sampled time minus idle; it is split into JS, GC and
 * "(program)" (native code and the event loop outside JS). Tokens are counted from the usage chunks. Next to it,
 * `cpu_ms_per_token` is the main thread's on-CPU time over the same window from /proc schedstat (Linux): a
 * profile sample charges the time since the previous sample to the frame it lands in, so on a loaded machine a
 * native call after which the thread waited for a core looks busy; schedstat counts only time on a core.
 *
 * Only the main thread is profiled: llama.cpp's decode runs on the addon's worker threads (idle here). CPU
 * profile time is less sensitive to other load than wall time, but not immune: the load average is printed
 * before and after each round, and the figures are medians over BENCH_REPEATS rounds (3).
 *
 * Before/after: BENCH_BASELINE_DIR names another checkout (e.g. `git worktree add /tmp/base <commit>`, with
 * node_modules) whose server runs beside this one, each scenario on one then the other, so that both see the
 * same load; the JSON then adds `baseline` and `this_over_baseline` (per-round ratios and their median).
 *
 * Env: BENCH_TOKENS (128), BENCH_REPEATS (3), BENCH_TOP (15), BENCH_PROFILE_INTERVAL_US (200), BENCH_PROFILE_DIR
 * (keep the .cpuprofile files there, e.g. to open them in Chrome DevTools; default: a temp dir, removed),
 * BENCH_BASELINE_DIR.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { median, round } from "./support/bench-model.js";
import { monotonicMicros, type ProfileSummary, summariseCpuProfile } from "./support/cpu-profile.js";
import { startServerProcess } from "./support/server-process.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 128);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const TOP = Number(process.env.BENCH_TOP ?? 15);
const INTERVAL_US = Number(process.env.BENCH_PROFILE_INTERVAL_US ?? 200);
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const demoModel = path.join(repoRoot, "models/lori-demo.gguf");
/** Stop strings the demo model does not write: the matcher sees every token, generation runs to max_tokens. */
const STOPS = ["@@@@", "THE END.", "<stop-here>", "~~~~"];

type Route = "completions" | "chat";
interface Scenario {
  readonly name: string;
  readonly route: Route;
  readonly clients: number;
  readonly stop: boolean;
  /** Choices per request (`n`). */
  readonly n: number;
}

const scenarios: Scenario[] = [
  ...(["completions", "chat"] as const).flatMap((route) =>
    [1, 4].flatMap((clients) =>
      [false, true].map((stop) => ({ name: `${route}_${clients}c${stop ? "_stop" : ""}`, route, clients, stop, n: 1 })),
    ),
  ),
  // One client asking for 4 choices: their pieces are ready in the same tick and share one response.
  { name: "completions_1c_n4", route: "completions", clients: 1, stop: false, n: 4 },
];

const log = (line: string) => process.stderr.write(`[per-token] ${line}\n`);
const loadAverage = () => os.loadavg().map((l) => round(l, 2));

/** One streamed request; returns the completion tokens from the usage chunk. */
async function streamOnce(url: string, route: Route, prompt: string, tokens: number, stop: boolean, n: number): Promise<number> {
  const common = {
    model: "demo",
    n,
    max_tokens: tokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
    ...(stop ? { stop: STOPS } : {}),
  };
  const body = route === "chat" ? { ...common, messages: [{ role: "user", content: prompt }] } : { ...common, prompt };
  const response = await fetch(`${url}/v1/${route === "chat" ? "chat/completions" : "completions"}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffer = "";
  let completionTokens = 0;
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6)) as { usage?: { completion_tokens: number } | null; error?: unknown };
      if (data.error) throw new Error(`in-band error: ${JSON.stringify(data.error)}`);
      if (data.usage) completionTokens = data.usage.completion_tokens;
    }
  }
  return completionTokens;
}

/**
 * The main thread's on-CPU time in ms (Linux /proc schedstat, nanosecond resolution), or null elsewhere. Unlike
 * profile samples it does not count time the thread was runnable but waiting for a core (on a loaded 2-core
 * machine, a sample taken after such a wait charges the wait to whatever native call was running).
 */
async function mainThreadCpuMs(pid: number): Promise<number | null> {
  try {
    const fields = (await readFile(`/proc/${pid}/task/${pid}/schedstat`, "utf8")).trim().split(/\s+/);
    return Number(fields[0]) / 1e6;
  } catch {
    return null;
  }
}

interface ScenarioResult {
  readonly tokens: number;
  readonly wall_ms: number;
  /** Main-thread CPU ms per token from schedstat (null where /proc has no schedstat). */
  readonly cpu_ms_per_token: number | null;
  readonly busy_ms_per_token: number;
  readonly js_ms_per_token: number;
  readonly gc_ms_per_token: number;
  readonly program_ms_per_token: number;
  readonly summary: ProfileSummary;
}

type RoundResult = { load_before: number[]; load_after: number[]; scenarios: Record<string, ScenarioResult> };

interface Side {
  /** "this" (the checkout this bench is in) or "baseline" (BENCH_BASELINE_DIR). */
  readonly label: string;
  readonly root: string;
}

async function startProfiled(side: Side, dir: string) {
  return startServerProcess(
    [
      "--model",
      `demo=${demoModel}`,
      "--threads",
      "1",
      "--gpu",
      "off",
      "--parallel",
      "4",
      "--context-size",
      "1024",
      "--adapters-dir",
      path.join(dir, "adapters"),
      "--adapters-poll-ms",
      "0",
      "--data-dir",
      path.join(dir, "data"),
    ],
    ["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-interval", String(INTERVAL_US)],
    {},
    { sourceRoot: side.root },
  );
}

/**
 * One round: a fresh profiled server per side, every scenario once on each (after a warm-up pass). With two
 * sides, each scenario runs on one then the other (the order alternates by round), so both see the same load.
 */
async function round1(root: string, index: number, sides: readonly Side[]): Promise<RoundResult[]> {
  const load_before = loadAverage();
  const dirs = await Promise.all(sides.map((side) => mkdtemp(path.join(root, `round-${index}-${side.label}-`))));
  const servers: Array<Awaited<ReturnType<typeof startProfiled>>> = [];
  const windows = sides.map(() => new Map<string, { from: number; to: number; tokens: number; cpuMs: number | null }>());
  try {
    for (const [i, side] of sides.entries()) servers.push(await startProfiled(side, dirs[i]!));
    // A full unmeasured pass first: the first requests run cold (JIT, caches), which would charge the first
    // scenario for it.
    for (const server of servers) {
      for (const s of scenarios) {
        await Promise.all(
          Array.from({ length: s.clients }, (_, c) => streamOnce(server.url, s.route, `Warm up ${c}.`, TOKENS, s.stop, s.n)),
        );
      }
    }
    for (const s of scenarios) {
      const order = servers.map((_, i) => i);
      if (index % 2 === 1) order.reverse();
      for (const i of order) {
        const server = servers[i]!;
        const cpuBefore = await mainThreadCpuMs(server.pid);
        const from = monotonicMicros();
        const counts = await Promise.all(
          Array.from({ length: s.clients }, (_, c) =>
            streamOnce(server.url, s.route, `Tell me a story, number ${c}.`, TOKENS, s.stop, s.n),
          ),
        );
        const to = monotonicMicros();
        const cpuAfter = await mainThreadCpuMs(server.pid);
        const cpuMs = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
        windows[i]!.set(s.name, { from, to, tokens: counts.reduce((a, b) => a + b, 0), cpuMs });
      }
    }
  } finally {
    for (const server of servers) await server.stop();
  }
  const load_after = loadAverage();
  const results: RoundResult[] = [];
  for (const [i, server] of servers.entries()) {
    const dir = dirs[i]!;
    // node-llama-cpp tests its binary in a short-lived child process, which writes a profile too, and worker
    // threads write their own: take the server's main thread (thread 0).
    const files = await readdir(dir);
    const file = files.find((f) => f.includes(`.${server.pid}.0.`) && f.endsWith(".cpuprofile"));
    if (!file) throw new Error(`no .cpuprofile for pid ${server.pid} in ${dir}: ${files.join(", ")}`);
    const out: Record<string, ScenarioResult> = {};
    for (const [name, w] of windows[i]!) {
      const summary = await summariseCpuProfile(path.join(dir, file), 500, { from: w.from, to: w.to });
      const per = (ms: number) => round(ms / Math.max(1, w.tokens), 4);
      const js = Object.values(summary.js_self_ms_by_origin).reduce((a, b) => a + b, 0);
      out[name] = {
        tokens: w.tokens,
        wall_ms: round((w.to - w.from) / 1000, 1),
        cpu_ms_per_token: w.cpuMs === null ? null : per(w.cpuMs),
        busy_ms_per_token: per(summary.total_ms - summary.idle_ms),
        js_ms_per_token: per(js),
        gc_ms_per_token: per(summary.gc_ms),
        program_ms_per_token: per(summary.program_ms),
        summary,
      };
    }
    results.push({ load_before, load_after, scenarios: out });
  }
  return results;
}

/** The top functions of the round whose all-scenario busy time is the median one. */
function medianRoundTop(rounds: readonly RoundResult[]) {
  const busy = rounds.map((r) => Object.values(r.scenarios).reduce((a, s) => a + s.busy_ms_per_token * s.tokens, 0));
  const order = busy.map((b, i) => [b, i] as const).sort((a, b) => a[0] - b[0]);
  const chosen = rounds[order[Math.floor(order.length / 2)]![1]]!;
  const byFn = new Map<string, { fn: string; at: string; ms: number }>();
  let tokens = 0;
  for (const s of Object.values(chosen.scenarios)) {
    tokens += s.tokens;
    for (const e of s.summary.top_self_ms) {
      const key = `${e.fn}@${e.at}`;
      const entry = byFn.get(key) ?? { ...e, ms: 0 };
      entry.ms += e.ms;
      byFn.set(key, entry);
    }
  }
  return [...byFn.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, TOP)
    .map((e) => ({ fn: e.fn, at: e.at, us_per_token: round((e.ms * 1000) / tokens, 1) }));
}

/** The figures of one side over all rounds: medians per scenario and over all scenarios. */
function sideReport(rounds: readonly RoundResult[]) {
  const perScenario = Object.fromEntries(
    scenarios.map((s) => {
      const runs = rounds.map((r) => r.scenarios[s.name]!);
      const med = (pick: (x: ScenarioResult) => number) => round(median(runs.map(pick)), 4);
      return [
        s.name,
        {
          tokens: runs[0]!.tokens,
          cpu_ms_per_token: runs.some((x) => x.cpu_ms_per_token === null) ? null : med((x) => x.cpu_ms_per_token!),
          busy_ms_per_token: med((x) => x.busy_ms_per_token),
          js_ms_per_token: med((x) => x.js_ms_per_token),
          gc_ms_per_token: med((x) => x.gc_ms_per_token),
          program_ms_per_token: med((x) => x.program_ms_per_token),
          busy_ms_per_token_rounds: runs.map((x) => x.busy_ms_per_token),
          cpu_ms_per_token_rounds: runs.map((x) => x.cpu_ms_per_token),
          wall_ms_per_token: med((x) => x.wall_ms / Math.max(1, x.tokens)),
        },
      ];
    }),
  );
  const allBusy = overall(rounds, (s) => s.busy_ms_per_token);
  const allCpu = overall(rounds, (s) => s.cpu_ms_per_token);
  return {
    busy_ms_per_token_all_scenarios: { median: round(median(allBusy), 4), rounds: allBusy.map((b) => round(b, 4)) },
    cpu_ms_per_token_all_scenarios: Number.isNaN(allCpu[0])
      ? null
      : { median: round(median(allCpu), 4), rounds: allCpu.map((b) => round(b, 4)) },
    scenarios: perScenario,
    top_self_time_median_round: medianRoundTop(rounds),
    js_self_ms_by_origin_median_round: mergeOrigins(rounds),
  };
}

/** Per round, a figure per token over all scenarios together (token-weighted). */
function overall(rounds: readonly RoundResult[], pick: (s: ScenarioResult) => number | null): number[] {
  return rounds.map((r) => {
    const list = Object.values(r.scenarios);
    const tokens = list.reduce((a, s) => a + s.tokens, 0);
    return list.reduce((a, s) => a + (pick(s) ?? Number.NaN) * s.tokens, 0) / tokens;
  });
}

/** This checkout over the baseline, per round (the two ran side by side), then the median of those ratios. */
function pairedRatios(ours: readonly RoundResult[], base: readonly RoundResult[]) {
  const ratio = (pick: (s: ScenarioResult) => number | null) => {
    const a = overall(ours, pick);
    const b = overall(base, pick);
    const per = a.map((x, i) => x / b[i]!);
    return { median: round(median(per), 3), rounds: per.map((x) => round(x, 3)) };
  };
  return { cpu_ms_per_token: ratio((s) => s.cpu_ms_per_token), busy_ms_per_token: ratio((s) => s.busy_ms_per_token) };
}

async function main() {
  const keep = process.env.BENCH_PROFILE_DIR;
  if (keep) await mkdir(keep, { recursive: true });
  const root = keep ?? (await mkdtemp(path.join(tmpdir(), "lori-per-token-")));
  const baselineDir = process.env.BENCH_BASELINE_DIR;
  const sides: Side[] = [
    { label: "this", root: repoRoot },
    ...(baselineDir ? [{ label: "baseline", root: path.resolve(baselineDir) }] : []),
  ];
  try {
    const rounds = sides.map((): RoundResult[] => []);
    for (let r = 0; r < REPEATS; r++) {
      log(`round ${r + 1}/${REPEATS}, load ${loadAverage().join(" ")}`);
      const results = await round1(root, r, sides);
      results.forEach((result, i) => rounds[i]!.push(result));
    }
    console.log(
      JSON.stringify(
        {
          bench: "per-token",
          model: "models/lori-demo.gguf",
          tokens_per_request: TOKENS,
          rounds: REPEATS,
          profile_interval_us: INTERVAL_US,
          cores: os.availableParallelism(),
          load_average: rounds[0]!.map((r) => ({ before: r.load_before, after: r.load_after })),
          ...sideReport(rounds[0]!),
          ...(baselineDir
            ? {
                baseline: { dir: path.resolve(baselineDir), ...sideReport(rounds[1]!) },
                this_over_baseline: pairedRatios(rounds[0]!, rounds[1]!),
              }
            : {}),
        },
        null,
        2,
      ),
    );
  } finally {
    if (!keep) await rm(root, { recursive: true, force: true });
  }
}

/** JS self ms per token by origin, median over rounds. */
function mergeOrigins(rounds: readonly RoundResult[]) {
  const perRound = rounds.map((r) => {
    const byOrigin = new Map<string, number>();
    let tokens = 0;
    for (const s of Object.values(r.scenarios)) {
      tokens += s.tokens;
      for (const [o, ms] of Object.entries(s.summary.js_self_ms_by_origin)) byOrigin.set(o, (byOrigin.get(o) ?? 0) + ms);
    }
    return new Map([...byOrigin].map(([o, ms]) => [o, ms / tokens]));
  });
  const origins = new Set(perRound.flatMap((m) => [...m.keys()]));
  return Object.fromEntries(
    [...origins].map((o) => [o, round(median(perRound.map((m) => m.get(o) ?? 0)), 4)] as const).sort((a, b) => b[1] - a[1]),
  );
}

await main();
