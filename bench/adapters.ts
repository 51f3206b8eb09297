/**
 * bench/adapters: lori-server vs llama.cpp's llama-server, side by side in one run, serving LoRA adapters on the
 * bench shape (same GGUF, same adapters, greedy, EOS ignored, same prompt and max tokens), twice: both servers
 * at their defaults, then both at equal threads (BENCH_SETTINGS). Prints one JSON object with each figure as
 * ours/theirs and keeps it in bench/results/. A run during which other processes used the CPU is refused
 * (exit 3): see support/quiet-machine.ts.
 *
 *   npm run build && npx tsx bench/adapters.ts
 *
 * Figures
 *  - single client decode tokens/s (after the first token) with no adapter, 1 adapter, 2 adapters stacked
 *    (ours: "adapter": ["a","b"], compiled into one cat-merged rank-64 adapter; llama-server: both ids, scale 1);
 *  - aggregate tokens/s for 4 concurrent clients on one adapter set and on 4 different sets
 *    (ours --parallel 4 with default lanes; llama-server -np 4);
 *  - added time to first token when a request needs a lane swap: a server with one lane (ours --max-lanes 1
 *    --parallel 1; llama-server -np 1) alternates sets a, a, b, b, a, a ...: the first request of each pair
 *    swaps, the second hits the warm lane. Every prompt starts with a unique number, so no request reuses a
 *    cached prompt prefix and the difference is the swap itself. Requests ask for 1 token and are timed to
 *    the end of the response (a streamed first token can be held back while it is a partial UTF-8
 *    character, which would add a whole decode step). Paired differences -> p50 / p95. Ours also
 *    reports lori_lane_swap_seconds from /metrics.
 *  - where the time goes: llama-server's own per-request timings (prompt eval / decode), CPU time per token by
 *    thread of each server (from /proc), node-llama-cpp in-process decode rates (the engine without HTTP), and a
 *    V8 CPU profile of our server's main thread.
 *
 * Adapters: 4 random LoRI adapters (rank 32, all 7 projections, B ~ U(-0.05, 0.05)) written to a temp dir
 * outside the repo; llama-server gets each compiled to a GGUF LoRA (compileGgufLora) with --lora, initialised
 * to scale 0 (--lora-init-without-apply) and selects them per request with "lora": [{"id", "scale"}].
 *
 * Env: BENCH_TOKENS (128), BENCH_REPEATS (5), BENCH_AGG_REPEATS (3), BENCH_SWAP_ROUNDS (24), BENCH_THREADS (1),
 * BENCH_PROFILE (1; 0 skips the CPU profile), BENCH_IN_PROCESS (1; 0 skips the in-process engine rates),
 * BENCH_FA (auto; flash attention of both servers at equal threads: ours --flash-attention, llama-server -fa; at
 * defaults both use their own default, which is auto for both),
 * BENCH_SETTINGS (defaults,equal_threads), BENCH_MAX_FOREIGN_CORES (0.1), BENCH_MAX_LOAD (0.5),
 * BENCH_SETTLE_SECONDS (180), BENCH_ALLOW_BUSY (0; 1 prints a busy run's figures, marked),
 * LORI_BENCH_CACHE (where the bench model and the llama-server build are cached).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { type FlashAttentionSetting, flashAttentionOption } from "../src/engine/lanes/llama-lane-context.js";
import { readGgufFile } from "../src/gguf/gguf-reader.js";
import { readAdapterDir } from "../src/lora/adapter-io.js";
import { compileGgufLora } from "../src/lora/gguf-lora.js";
import { mergeCat } from "../src/lora/merge.js";
import { writeRandomAdapter } from "../tests/support/adapter-fixtures.js";
import { ensureBenchModel, median, percentile, round } from "./support/bench-model.js";
import { monotonicMicros, summariseCpuProfile } from "./support/cpu-profile.js";
import { ensureLlamaServer, startLlamaServer } from "./support/llama-server.js";
import { type QuietReport, waitForQuiet, watchForeignCpu } from "./support/quiet-machine.js";
import { startServerProcess } from "./support/server-process.js";
import {
  histogramDelta,
  histogramPercentileBound,
  parseHistogram,
  streamTimed,
  threadCpu,
  threadCpuDelta,
  type ThreadCpu,
  type TimedStream,
} from "./support/stream-client.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 128);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const AGG_REPEATS = Number(process.env.BENCH_AGG_REPEATS ?? 3);
const SWAP_ROUNDS = Number(process.env.BENCH_SWAP_ROUNDS ?? 24);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const PROFILE = (process.env.BENCH_PROFILE ?? "1") !== "0";
const IN_PROCESS = (process.env.BENCH_IN_PROCESS ?? "1") !== "0";
/** Flash attention of both servers (and the in-process contexts) at equal threads; "auto" is both servers' default. */
const FLASH_ATTENTION = (process.env.BENCH_FA ?? process.env.BENCH_LLAMA_FA ?? "auto") as FlashAttentionSetting;
const CONTEXT_PER_SEQUENCE = 1024;
const PROMPT = "Once upon a time there was a benchmark";
const RANK = 32;
const B_SCALE = 0.05;
const NAMES = ["a", "b", "c", "d"] as const;

const NON_ASCII_BYTES = Array.from({ length: 128 }, (_, i) => [128 + i, false]);

/** Issue 11's targets, ours over theirs (both settings), and the added TTFT of a lane swap. */
const TARGETS = {
  none: 1.0,
  one_adapter: 1.1,
  two_stacked: 1.3,
  four_clients_same_set: 1.0,
  four_clients_different_sets: 1.5,
  swap_p50_ms: 3,
};
const SETTINGS = (process.env.BENCH_SETTINGS ?? "defaults,equal_threads").split(",") as Settings[];
for (const settings of SETTINGS) {
  if (settings !== "defaults" && settings !== "equal_threads") throw new Error(`BENCH_SETTINGS: unknown '${settings}'`);
}
/** A run counts only when others used at most this many cores on average meanwhile. */
const MAX_FOREIGN_CORES = Number(process.env.BENCH_MAX_FOREIGN_CORES ?? 0.1);
/** Before starting, the 1-minute load average must fall below this (waiting up to SETTLE_SECONDS). */
const MAX_LOAD = Number(process.env.BENCH_MAX_LOAD ?? 0.5);
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 180);
/** BENCH_ALLOW_BUSY=1 prints a busy run's figures anyway (kept with "-busy" in the file name). */
const ALLOW_BUSY = process.env.BENCH_ALLOW_BUSY === "1";
const RESULTS_DIR = path.join(process.cwd(), "bench", "results");

type Side = "ours" | "theirs";
/** An adapter set: names of adapters, each at weight 1. */
type AdapterSet = readonly string[];

const log = (message: string) => process.stderr.write(`[bench/adapters] ${message}\n`);

interface Target {
  readonly side: Side;
  readonly url: string;
  readonly pid: number;
}

/** The request body each server understands for the same generation. */
function body(side: Side, set: AdapterSet, prompt: string, maxTokens: number): Record<string, unknown> {
  const common = { prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true };
  if (side === "ours") return { model: "bench", ...common, ...(set.length > 0 ? { adapter: [...set] } : {}) };
  // llama-server: every adapter not listed runs at scale 0 (and is skipped by llama.cpp). Its completion
  // endpoints run the output through a chat parser that fails with HTTP 500 ("does not match the expected
  // Content-only format") on invalid UTF-8, which the bench model's byte tokenizer (id = byte) emits freely:
  // forbid bytes 0x80-0xFF. Same decode work per token; only which token wins changes.
  // Every loaded adapter is listed, unused ones at scale 0: measured here, a request with no "lora" field (or
  // "lora": []) on a server started with --lora ... --lora-init-without-apply decoded ~30 % slower than one
  // listing them at scale 0, which matched a server with no adapters loaded. We give llama-server its best case.
  return { ...common, logit_bias: NON_ASCII_BYTES, lora: NAMES.map((name, id) => ({ id, scale: set.includes(name) ? 1 : 0 })) };
}

/** CPU seconds per thread name, accumulated per (side, scenario). */
class CpuLedger {
  private readonly totals = new Map<string, { cpu: Map<string, number>; tokens: number }>();
  async measure<T extends { tokens: number } | Array<{ tokens: number }>>(key: string, pid: number, run: () => Promise<T>): Promise<T> {
    const before: ThreadCpu[] = await threadCpu(pid);
    const result = await run();
    const after = await threadCpu(pid);
    const entry = this.totals.get(key) ?? { cpu: new Map<string, number>(), tokens: 0 };
    for (const [name, seconds] of Object.entries(threadCpuDelta(after, before))) entry.cpu.set(name, (entry.cpu.get(name) ?? 0) + seconds);
    entry.tokens += Array.isArray(result) ? result.reduce((n, r) => n + r.tokens, 0) : result.tokens;
    this.totals.set(key, entry);
    return result;
  }
  /** CPU ms per generated token by thread name (threads under 0.05 ms/token folded into "other"). */
  report(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [key, { cpu, tokens }] of this.totals) {
      const row: Record<string, number> = {};
      let other = 0;
      let total = 0;
      for (const [name, seconds] of [...cpu].sort((a, b) => b[1] - a[1])) {
        const msPerToken = (seconds * 1000) / Math.max(1, tokens);
        total += msPerToken;
        if (msPerToken >= 0.05) row[name] = round(msPerToken, 2);
        else other += msPerToken;
      }
      if (other > 0) row.other = round(other, 2);
      row.total = round(total, 2);
      out[key] = row;
    }
    return out;
  }
}

function compare(ours: number, theirs: number, target?: number, higherIsBetter = true) {
  const ratio = theirs > 0 ? ours / theirs : NaN;
  return {
    ours: round(ours, 1),
    theirs: round(theirs, 1),
    ratio_ours_vs_theirs: round(ratio),
    ...(target !== undefined ? { target, met: higherIsBetter ? ratio >= target : ratio <= target } : {}),
  };
}

async function prepareAdapters(modelPath: string) {
  const root = await mkdtemp(path.join(tmpdir(), "lori-bench-adapters-"));
  const adaptersDir = path.join(root, "adapters");
  const ggufDir = path.join(root, "gguf");
  await mkdir(adaptersDir, { recursive: true });
  await mkdir(ggufDir, { recursive: true });
  const header = await readGgufFile(modelPath);
  const ggufs: string[] = [];
  const adapters = [];
  for (const [i, name] of NAMES.entries()) {
    const dir = await writeRandomAdapter({ baseGguf: modelPath, adaptersDir, name, seed: 101 + i * 17, rank: RANK, bScale: B_SCALE });
    const adapter = await readAdapterDir(dir);
    adapters.push(adapter);
    const file = path.join(ggufDir, `${name}.gguf`);
    await compileGgufLora(adapter, header, file);
    ggufs.push(file);
  }
  // What our server applies for ["a","b"]: one cat-merged rank-64 adapter (for the in-process comparison).
  const mergedAb = path.join(ggufDir, "a+b-cat.gguf");
  await compileGgufLora(
    mergeCat([
      { adapter: adapters[0]!, weight: 1, name: "a" },
      { adapter: adapters[1]!, weight: 1, name: "b" },
    ]),
    header,
    mergedAb,
  );
  return { root, adaptersDir, ggufs, mergedAb };
}

/**
 * How both servers are configured. "defaults": each as its user starts it, with no tuning flag (ours: threads
 * auto, context 4096, --parallel 4; llama-server: its own thread count, context from the model, 4 auto slots,
 * flash attention auto). "equal_threads": both pinned to BENCH_THREADS threads, the same context per sequence,
 * 4 slots and the same flash attention setting (BENCH_FA).
 */
type Settings = "defaults" | "equal_threads";

const loriArgs = (modelPath: string, adaptersDir: string, extra: string[], settings: Settings = "equal_threads") => [
  "--model",
  `bench=${modelPath}`,
  ...(settings === "equal_threads"
    ? ["--threads", String(THREADS), "--context-size", String(CONTEXT_PER_SEQUENCE), "--flash-attention", FLASH_ATTENTION]
    : []),
  "--gpu",
  "off",
  "--adapters-dir",
  adaptersDir,
  "--adapters-poll-ms",
  "0",
  ...extra,
];

const llamaArgs = (modelPath: string, ggufs: string[], slots: number, settings: Settings = "equal_threads") => [
  "-m",
  modelPath,
  ...(settings === "equal_threads"
    ? [
        "-t",
        String(THREADS),
        "-tb",
        String(THREADS),
        "-c",
        String(CONTEXT_PER_SEQUENCE * slots),
        "-np",
        String(slots),
        "-fa",
        FLASH_ATTENTION,
      ]
    : []),
  "--metrics",
  // Per-request adapter selection: every adapter loaded at scale 0, each request names its own ("lora" field).
  ...ggufs.flatMap((f) => ["--lora", f]),
  "--lora-init-without-apply",
];

async function metricsText(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  return response.ok ? response.text() : "";
}

function counter(text: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

async function singleClientAndAggregate(
  modelPath: string,
  adaptersDir: string,
  ggufs: string[],
  ledger: CpuLedger,
  settings: Settings,
  engine?: InProcessEngine,
) {
  // --parallel 4 is our default; said explicitly so the equal-threads run has 4 slots on both sides.
  const ours = await startServerProcess(loriArgs(modelPath, adaptersDir, ["--parallel", "4"], settings));
  const theirs = await startLlamaServer(await ensureLlamaServer().then((b) => b.binary), llamaArgs(modelPath, ggufs, 4, settings));
  const targets: Target[] = [
    { side: "ours", url: ours.url, pid: ours.pid },
    { side: "theirs", url: theirs.url, pid: theirs.pid },
  ];
  try {
    const sets: Record<string, AdapterSet> = { none: [], one_adapter: ["a"], two_stacked: ["a", "b"] };
    log("warm-up (compiles and loads every adapter set on both servers)");
    for (const t of targets) {
      for (const set of [[], ["a"], ["a", "b"], ["b"], ["c"], ["d"]]) await streamTimed(t.url, body(t.side, set, PROMPT, 8));
    }
    for (const label of ["none", "one_adapter", "two_stacked", "two_cat_merged_rank64"]) await engine?.run(label, PROMPT, false);
    const swapsBefore = counter(await metricsText(ours.url), "lori_lane_swaps_total");

    log(`single client: ${REPEATS} repeats x 3 sets x 2 servers, ${TOKENS} tokens each`);
    const single: Record<string, Record<Side, TimedStream[]>> = {};
    for (let r = 0; r < REPEATS; r++) {
      for (const [label, set] of Object.entries(sets)) {
        single[label] ??= { ours: [], theirs: [] };
        const order = r % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          single[label]![t.side].push(
            await ledger.measure(`${settings} ${t.side} 1 client ${label}`, t.pid, () =>
              streamTimed(t.url, body(t.side, set, PROMPT, TOKENS)),
            ),
          );
        }
        // The engine alone, in this process, right after the servers (same load conditions).
        await engine?.run(label, PROMPT);
        if (label === "two_stacked") await engine?.run("two_cat_merged_rank64", PROMPT);
      }
    }

    log(`4 clients: ${AGG_REPEATS} repeats x 2 scenarios x 2 servers`);
    const scenarios: Record<string, AdapterSet[]> = {
      same_set: [["a"], ["a"], ["a"], ["a"]],
      different_sets: [["a"], ["b"], ["c"], ["d"]],
    };
    const aggregate: Record<string, Record<Side, number[]>> = {};
    const aggregateTtft: Record<string, Record<Side, number[]>> = {};
    for (let r = 0; r < AGG_REPEATS; r++) {
      for (const [label, clientSets] of Object.entries(scenarios)) {
        aggregate[label] ??= { ours: [], theirs: [] };
        aggregateTtft[label] ??= { ours: [], theirs: [] };
        const order = r % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          const start = performance.now();
          const results = await ledger.measure(`${settings} ${t.side} 4 clients ${label}`, t.pid, () =>
            Promise.all(clientSets.map((set, i) => streamTimed(t.url, body(t.side, set, `${PROMPT} ${i}`, TOKENS)))),
          );
          const seconds = (performance.now() - start) / 1000;
          aggregate[label]![t.side].push(results.reduce((n, x) => n + x.tokens, 0) / seconds);
          aggregateTtft[label]![t.side].push(...results.map((x) => x.ttftMs));
        }
      }
    }
    const oursMetrics = await metricsText(ours.url);
    return {
      single,
      aggregate,
      aggregateTtft,
      oursSwapsDuringRun: counter(oursMetrics, "lori_lane_swaps_total") - swapsBefore,
      oursLanes: counter(oursMetrics, "lori_lanes_created_total"),
    };
  } finally {
    await ours.stop();
    await theirs.stop();
  }
}

async function swapLatency(modelPath: string, adaptersDir: string, ggufs: string[]) {
  const ours = await startServerProcess(loriArgs(modelPath, adaptersDir, ["--parallel", "1", "--max-lanes", "1"]));
  const theirs = await startLlamaServer(await ensureLlamaServer().then((b) => b.binary), llamaArgs(modelPath, ggufs, 1));
  const targets: Target[] = [
    { side: "ours", url: ours.url, pid: ours.pid },
    { side: "theirs", url: theirs.url, pid: theirs.pid },
  ];
  try {
    let counterValue = 0;
    const prompt = () => `${++counterValue} ${PROMPT}`;
    // Warm-up: load both adapters on both servers.
    for (const t of targets) for (const set of [["a"], ["b"], ["a"]]) await streamTimed(t.url, body(t.side, set, prompt(), 4));
    const before = await metricsText(ours.url);
    const rows: Record<Side, { swap: number[]; warm: number[]; diff: number[]; swapPromptMs: number[]; warmPromptMs: number[] }> = {
      ours: { swap: [], warm: [], diff: [], swapPromptMs: [], warmPromptMs: [] },
      theirs: { swap: [], warm: [], diff: [], swapPromptMs: [], warmPromptMs: [] },
    };
    log(`lane swaps: ${SWAP_ROUNDS} rounds x 2 servers (swap request + warm request each)`);
    for (let i = 0; i < SWAP_ROUNDS; i++) {
      // Both servers are left on "a" by the warm-up, so round 0 goes to "b".
      const set = i % 2 === 0 ? ["b"] : ["a"];
      const order = i % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        // max_tokens 1, timed to the end of the response: the first token's time on both servers, even when
        // its text is held back (a partial UTF-8 character is only streamed once complete).
        const swap = await streamTimed(t.url, body(t.side, set, prompt(), 1));
        const warm = await streamTimed(t.url, body(t.side, set, prompt(), 1));
        const row = rows[t.side];
        row.swap.push(swap.totalMs);
        row.warm.push(warm.totalMs);
        row.diff.push(swap.totalMs - warm.totalMs);
        if (swap.timings?.prompt_ms !== undefined) row.swapPromptMs.push(swap.timings.prompt_ms);
        if (warm.timings?.prompt_ms !== undefined) row.warmPromptMs.push(warm.timings.prompt_ms);
      }
    }
    const after = await metricsText(ours.url);
    const hist = histogramDelta(parseHistogram(after, "lori_lane_swap_seconds"), parseHistogram(before, "lori_lane_swap_seconds"));
    const toMs = (s: number | null) => (s === null ? null : s === Infinity ? "inf" : round(s * 1000, 2));
    const summary = (side: Side) => {
      const r = rows[side];
      return {
        added_ttft_ms_p50: round(percentile(r.diff, 50), 2),
        added_ttft_ms_p95: round(percentile(r.diff, 95), 2),
        swap_ttft_ms_p50: round(percentile(r.swap, 50), 2),
        warm_ttft_ms_p50: round(percentile(r.warm, 50), 2),
        p50_swap_minus_p50_warm_ms: round(percentile(r.swap, 50) - percentile(r.warm, 50), 2),
        ...(r.swapPromptMs.length > 0
          ? { server_prompt_ms_p50: { swap: round(median(r.swapPromptMs), 2), warm: round(median(r.warmPromptMs), 2) } }
          : {}),
      };
    };
    return {
      ours: {
        ...summary("ours"),
        swaps_counted: counter(after, "lori_lane_swaps_total") - counter(before, "lori_lane_swaps_total"),
        lori_lane_swap_seconds: {
          count: hist.count,
          mean_ms: hist.count > 0 ? round((hist.sum / hist.count) * 1000, 3) : null,
          p50_bucket_upper_ms: toMs(histogramPercentileBound(hist, 50)),
          p95_bucket_upper_ms: toMs(histogramPercentileBound(hist, 95)),
        },
      },
      theirs: summary("theirs"),
    };
  } finally {
    await ours.stop();
    await theirs.stop();
  }
}

/** Wraps a method of node-llama-cpp's native context object to add up the time its promises take. */
function timeNative(native: Record<string, unknown>, method: string, into: { ms: number; calls: number }): void {
  const original = native[method];
  if (typeof original !== "function") return;
  const bound = (original as (...args: unknown[]) => unknown).bind(native);
  Object.defineProperty(native, method, {
    configurable: true,
    value: async (...args: unknown[]) => {
      const start = performance.now();
      try {
        return await bound(...args);
      } finally {
        into.ms += performance.now() - start;
        into.calls++;
      }
    },
  });
}

type LlamaModule = typeof import("node-llama-cpp");
type Ctx = Awaited<ReturnType<Awaited<ReturnType<Awaited<ReturnType<LlamaModule["getLlama"]>>["loadModel"]>>["createContext"]>>;

/**
 * node-llama-cpp in the bench process, no HTTP: the engine our server drives, on the same adapter files, run
 * interleaved with the two servers. Splits each token's time into the native decode call, the native sampling
 * call and the rest (JS in node-llama-cpp: batching via setImmediate, thread-splitter allocation, promise hops).
 */
class InProcessEngine {
  private constructor(
    private readonly llama: Awaited<ReturnType<LlamaModule["getLlama"]>>,
    private readonly model: Awaited<ReturnType<Awaited<ReturnType<LlamaModule["getLlama"]>>["loadModel"]>>,
    private readonly contexts: Map<string, { context: Ctx; decode: { ms: number; calls: number }; sample: { ms: number; calls: number } }>,
  ) {}

  readonly rates = new Map<string, number[]>();
  private readonly totals = new Map<string, { wallMs: number; tokens: number; decodeMs: number; sampleMs: number }>();

  static async open(modelPath: string, cases: Record<string, Array<{ filePath: string; scale: number }>>): Promise<InProcessEngine> {
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never", skipDownload: true });
    const model = await llama.loadModel({ modelPath });
    const contexts = new Map();
    for (const [label, adapters] of Object.entries(cases)) {
      const context = await model.createContext({
        sequences: 1,
        contextSize: CONTEXT_PER_SEQUENCE,
        threads: THREADS,
        flashAttention: flashAttentionOption(FLASH_ATTENTION),
        ...(adapters.length > 0 ? { lora: { adapters } } : {}),
      });
      const native = (context as unknown as { _ctx: Record<string, unknown> })._ctx;
      const decode = { ms: 0, calls: 0 };
      const sample = { ms: 0, calls: 0 };
      timeNative(native, "decodeBatch", decode);
      timeNative(native, "sampleToken", sample);
      contexts.set(label, { context, decode, sample });
    }
    return new InProcessEngine(llama, model, contexts);
  }

  /** One generation of TOKENS greedy tokens on the case's context; `record` = false for warm-up. */
  async run(label: string, prompt: string, record = true): Promise<{ ttftMs: number; decodeTokensPerSecond: number }> {
    const entry = this.contexts.get(label)!;
    const sequence = entry.context.getSequence();
    const decode0 = entry.decode.ms;
    const sample0 = entry.sample.ms;
    let first = 0;
    let count = 0;
    const start = performance.now();
    try {
      for await (const token of sequence.evaluate(this.model.tokenize(prompt), { temperature: 0, yieldEogToken: true })) {
        void token;
        if (count === 0) first = performance.now();
        if (++count >= TOKENS) break;
      }
    } finally {
      sequence.dispose();
    }
    const end = performance.now();
    const result = { ttftMs: first - start, decodeTokensPerSecond: ((count - 1) * 1000) / (end - first) };
    if (record) {
      (this.rates.get(label) ?? this.rates.set(label, []).get(label)!).push(result.decodeTokensPerSecond);
      const t = this.totals.get(label) ?? { wallMs: 0, tokens: 0, decodeMs: 0, sampleMs: 0 };
      t.wallMs += end - start;
      t.tokens += count;
      t.decodeMs += entry.decode.ms - decode0;
      t.sampleMs += entry.sample.ms - sample0;
      this.totals.set(label, t);
    }
    return result;
  }

  /**
   * The swap as our lanes do it, without HTTP or scheduling: one context alternates adapter files a, b via
   * node-llama-cpp's internal _setLoras; each swap is followed by a prompt (first decode after the swap) and a
   * warm prompt. Reports setLoras time and the first decode call's extra time (llama.cpp re-reserves its
   * compute graphs after an adapter change).
   */
  async swapProbe(files: [string, string], rounds: number) {
    const context = await this.model.createContext({
      sequences: 1,
      contextSize: CONTEXT_PER_SEQUENCE,
      threads: THREADS,
      flashAttention: flashAttentionOption(FLASH_ATTENTION),
      lora: { adapters: [{ filePath: files[0], scale: 1 }] },
    });
    const native = (context as unknown as { _ctx: Record<string, unknown> })._ctx;
    const decode = { ms: 0, calls: 0 };
    timeNative(native, "decodeBatch", decode);
    const setLoras = (context as unknown as { _setLoras(l: Array<{ filePath: string; scale: number }>): Promise<void> })._setLoras.bind(
      context,
    );
    const firstDecode = async (prompt: string) => {
      const sequence = context.getSequence();
      const before = decode.ms;
      const start = performance.now();
      try {
        for await (const token of sequence.evaluate(this.model.tokenize(prompt), { temperature: 0, yieldEogToken: true })) {
          void token;
          break;
        }
      } finally {
        sequence.dispose();
      }
      return { ttft: performance.now() - start, decodeMs: decode.ms - before };
    };
    const setMs: number[] = [];
    const addedTtft: number[] = [];
    const addedDecode: number[] = [];
    let n = 0;
    await firstDecode(`${n++} ${PROMPT}`);
    try {
      for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        await setLoras([{ filePath: files[(i + 1) % 2]!, scale: 1 }]);
        setMs.push(performance.now() - t0);
        const swapped = await firstDecode(`${n++} ${PROMPT}`);
        const warm = await firstDecode(`${n++} ${PROMPT}`);
        addedTtft.push(swapped.ttft + setMs.at(-1)! - warm.ttft);
        addedDecode.push(swapped.decodeMs - warm.decodeMs);
      }
    } finally {
      await context.dispose();
    }
    return {
      set_loras_ms_p50: round(percentile(setMs, 50), 3),
      added_ttft_ms_p50: round(percentile(addedTtft, 50), 2),
      added_ttft_ms_p95: round(percentile(addedTtft, 95), 2),
      added_first_decode_call_ms_p50: round(percentile(addedDecode, 50), 2),
    };
  }

  summary() {
    const split: Record<string, Record<string, number>> = {};
    for (const [label, t] of this.totals) {
      const per = (ms: number) => round(ms / Math.max(1, t.tokens), 3);
      split[label] = {
        wall_ms_per_token: per(t.wallMs),
        decode_call_ms: per(t.decodeMs),
        sample_call_ms: per(t.sampleMs),
        js_and_scheduling_ms: per(t.wallMs - t.decodeMs - t.sampleMs),
      };
    }
    return {
      rates: Object.fromEntries([...this.rates].map(([l, r]) => [l, round(median(r), 1)])),
      split,
    };
  }

  async close(): Promise<void> {
    for (const { context } of this.contexts.values()) await context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}

/** Our server under `node --cpu-prof`, serving 1-adapter single-client and 4-different-sets traffic. */
async function profileOurs(modelPath: string, adaptersDir: string, root: string) {
  const dir = path.join(root, "cpu-prof");
  await mkdir(dir, { recursive: true });
  const ours = await startServerProcess(loriArgs(modelPath, adaptersDir, ["--parallel", "4"]), ["--cpu-prof", "--cpu-prof-dir", dir]);
  let tokens = 0;
  let from = 0;
  let to = 0;
  try {
    for (const set of [["a"], ["b"], ["c"], ["d"]]) await streamTimed(ours.url, body("ours", set, PROMPT, 8));
    from = monotonicMicros();
    for (let r = 0; r < 3; r++) tokens += (await streamTimed(ours.url, body("ours", ["a"], PROMPT, TOKENS))).tokens;
    for (let r = 0; r < 2; r++) {
      const results = await Promise.all(
        ["a", "b", "c", "d"].map((n, i) => streamTimed(ours.url, body("ours", [n], `${PROMPT} ${i}`, TOKENS))),
      );
      tokens += results.reduce((s, x) => s + x.tokens, 0);
    }
    to = monotonicMicros();
  } finally {
    await ours.stop();
  }
  // node-llama-cpp tests its binary in a short-lived child process, which writes a profile too: take the server's.
  const file =
    (await readdir(dir)).find((f) => f.endsWith(`.${ours.pid}.0.001.cpuprofile`)) ??
    (await readdir(dir)).find((f) => f.includes(`.${ours.pid}.`));
  if (!file) return { error: "no .cpuprofile written" };
  const summary = await summariseCpuProfile(path.join(dir, file), 15, { from, to });
  const busy = summary.total_ms - summary.idle_ms;
  return {
    note: "main JS thread only, samples during the measured traffic (3 x 1 client on 'a', 2 x 4 clients on a,b,c,d). llama.cpp decode runs on addon worker threads (idle here)",
    wall_ms_of_traffic: round((to - from) / 1000, 0),
    tokens,
    main_thread_busy_ms_per_token: round(busy / Math.max(1, tokens), 3),
    ...summary,
  };
}

/** The workloads' figures for one settings run, ours over theirs, with the targets of issue 11. */
function comparison(run: Awaited<ReturnType<typeof singleClientAndAggregate>>, settings: Settings, quiet: QuietReport) {
  const rate = (label: string, side: Side) => median(run.single[label]![side].map((s) => s.decodeTokensPerSecond));
  const ttft = (label: string, side: Side) => median(run.single[label]![side].map((s) => s.ttftMs));
  const agg = (label: string, side: Side) => median(run.aggregate[label]![side]);
  const theirTimings = (label: string) => {
    const t = run.single[label]!.theirs.map((s) => s.timings).filter((x) => x !== undefined);
    return t.length === 0
      ? null
      : {
          prompt_ms: round(median(t.map((x) => x.prompt_ms ?? 0)), 2),
          decode_ms_per_token: round(median(t.map((x) => (x.predicted_ms ?? 0) / Math.max(1, x.predicted_n ?? 1))), 3),
          server_decode_tokens_per_s: round(median(t.map((x) => x.predicted_per_second ?? 0)), 1),
        };
  };
  const single = {
    none: compare(rate("none", "ours"), rate("none", "theirs"), TARGETS.none),
    one_adapter: compare(rate("one_adapter", "ours"), rate("one_adapter", "theirs"), TARGETS.one_adapter),
    two_stacked: compare(rate("two_stacked", "ours"), rate("two_stacked", "theirs"), TARGETS.two_stacked),
  };
  const four = {
    same_set: compare(agg("same_set", "ours"), agg("same_set", "theirs"), TARGETS.four_clients_same_set),
    different_sets: compare(agg("different_sets", "ours"), agg("different_sets", "theirs"), TARGETS.four_clients_different_sets),
  };
  const met = (figure: { ratio_ours_vs_theirs: number; met?: boolean }, target: number) =>
    `${figure.ratio_ours_vs_theirs} >= ${target}: ${figure.met}`;
  return {
    quiet,
    lori_server_args: loriArgs("<model>", "<dir>", ["--parallel", "4"], settings).join(" "),
    llama_server_args: llamaArgs("<model>", ["<a.gguf>", "..."], 4, settings).join(" "),
    lanes_created: run.oursLanes,
    swaps_during_throughput_runs: run.oursSwapsDuringRun,
    single_client_decode_tokens_per_s: single,
    single_client_ttft_ms: Object.fromEntries(
      Object.keys(run.single).map((label) => [label, compare(ttft(label, "ours"), ttft(label, "theirs"))]),
    ),
    four_clients_aggregate_tokens_per_s: four,
    four_clients_ttft_ms_p50: Object.fromEntries(
      Object.entries(run.aggregateTtft).map(([label, v]) => [
        label,
        { ours: round(median(v.ours), 1), theirs: round(median(v.theirs), 1) },
      ]),
    ),
    targets: {
      none: met(single.none, TARGETS.none),
      one_adapter: met(single.one_adapter, TARGETS.one_adapter),
      two_stacked: met(single.two_stacked, TARGETS.two_stacked),
      four_clients_same_set: met(four.same_set, TARGETS.four_clients_same_set),
      four_clients_different_sets: met(four.different_sets, TARGETS.four_clients_different_sets),
    },
    llama_server_own_timings_single_client: Object.fromEntries(Object.keys(run.single).map((l) => [l, theirTimings(l)])),
    rate,
  };
}

async function main() {
  const build = await ensureLlamaServer();
  const modelPath = await ensureBenchModel();
  log("writing 4 rank-32 adapters and their GGUF LoRAs");
  const { root, adaptersDir, ggufs, mergedAb } = await prepareAdapters(modelPath);
  try {
    if (!(await waitForQuiet(MAX_LOAD, SETTLE_SECONDS, log))) {
      console.log(JSON.stringify({ bench: "adapters", refused: `load average ${os.loadavg()[0]} stayed >= ${MAX_LOAD}` }));
      process.exitCode = 3;
      return;
    }
    const ledger = new CpuLedger();
    const engineHandle =
      IN_PROCESS && SETTINGS.includes("equal_threads")
        ? await InProcessEngine.open(modelPath, {
            none: [],
            one_adapter: [{ filePath: ggufs[0]!, scale: 1 }],
            two_stacked: [
              { filePath: ggufs[0]!, scale: 1 },
              { filePath: ggufs[1]!, scale: 1 },
            ],
            two_cat_merged_rank64: [{ filePath: mergedAb, scale: 1 }],
          })
        : undefined;
    const runs: Partial<Record<Settings, ReturnType<typeof comparison>>> = {};
    for (const settings of SETTINGS) {
      log(`--- settings: ${settings}`);
      const watch = watchForeignCpu(MAX_FOREIGN_CORES);
      const run = await singleClientAndAggregate(
        modelPath,
        adaptersDir,
        ggufs,
        ledger,
        settings,
        settings === "equal_threads" ? engineHandle : undefined,
      );
      runs[settings] = comparison(run, settings, watch.stop());
      log(`${settings}: ${JSON.stringify(runs[settings]!.targets)} quiet ${JSON.stringify(runs[settings]!.quiet)}`);
    }
    const swapWatch = watchForeignCpu(MAX_FOREIGN_CORES);
    const swaps = await swapLatency(modelPath, adaptersDir, ggufs);
    const swapQuiet = swapWatch.stop();
    log("in-process swap probe");
    const inProcessSwap = engineHandle ? await engineHandle.swapProbe([ggufs[0]!, ggufs[1]!], SWAP_ROUNDS) : undefined;
    const engine = engineHandle?.summary();
    await engineHandle?.close();
    log("CPU profile of our server");
    const profile = PROFILE ? await profileOurs(modelPath, adaptersDir, root) : undefined;

    const equal = runs.equal_threads;
    const quietReports = [...Object.values(runs).map((r) => r.quiet), swapQuiet];
    const busy = quietReports.some((q) => !q.quiet);
    const result = {
      bench: "adapters",
      date: new Date().toISOString(),
      machine: {
        cpus: os.availableParallelism(),
        model: os.cpus()[0]?.model ?? "unknown",
        quiet: !busy,
        rule: `each run is refused when processes outside the bench used more than ${MAX_FOREIGN_CORES} cores on average, or the load average stayed >= ${MAX_LOAD} before it`,
      },
      model: "bench shape (llama F16 d=512, 8 layers, 8/4 heads, ff 1408)",
      adapters: `4 x LoRI rank ${RANK}, all 7 projections, B ~ U(-${B_SCALE}, ${B_SCALE}), F32 GGUF LoRA`,
      equal_threads: THREADS,
      tokens_per_request: TOKENS,
      repeats: { single: REPEATS, four_clients: AGG_REPEATS, swap_rounds: SWAP_ROUNDS },
      llama_server: { commit: build.commit, build_seconds_this_run: round(build.buildSeconds, 0) },
      settings: Object.fromEntries(Object.entries(runs).map(([name, { rate: _rate, ...figures }]) => [name, figures])),
      lane_swap: {
        ...swaps,
        quiet: swapQuiet,
        ratio_added_p50_ours_vs_theirs: round(swaps.ours.added_ttft_ms_p50 / swaps.theirs.added_ttft_ms_p50),
        target: `${swaps.ours.added_ttft_ms_p50} <= ${TARGETS.swap_p50_ms}: ${swaps.ours.added_ttft_ms_p50 <= TARGETS.swap_p50_ms}`,
      },
      where_time_goes: {
        cpu_ms_per_token_by_thread: ledger.report(),
        ...(engine && equal
          ? {
              in_process_node_llama_cpp_decode_tokens_per_s: engine.rates,
              in_process_ms_per_token_split: engine.split,
              ours_http_vs_in_process: {
                none: round(equal.rate("none", "ours") / engine.rates.none!),
                one_adapter: round(equal.rate("one_adapter", "ours") / engine.rates.one_adapter!),
                two_stacked_vs_cat_merged: round(equal.rate("two_stacked", "ours") / engine.rates.two_cat_merged_rank64!),
              },
              in_process_vs_llama_server: {
                none: round(engine.rates.none! / equal.rate("none", "theirs")),
                one_adapter: round(engine.rates.one_adapter! / equal.rate("one_adapter", "theirs")),
                two_stacked: round(engine.rates.two_stacked! / equal.rate("two_stacked", "theirs")),
              },
            }
          : {}),
        ...(inProcessSwap ? { in_process_swap_probe: inProcessSwap } : {}),
        ...(profile ? { ours_cpu_profile: profile } : {}),
      },
    };
    // Every run is kept, busy ones too (marked), so that runs can be compared later.
    await mkdir(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `adapters-${result.date.replace(/[:.]/g, "-")}${busy ? "-busy" : ""}.json`);
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    log(`kept in ${path.relative(process.cwd(), file)}`);
    if (busy && !ALLOW_BUSY) {
      console.log(JSON.stringify({ bench: "adapters", refused: "the machine was busy during a run", quiet: quietReports }, null, 2));
      process.exitCode = 3;
      return;
    }
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
