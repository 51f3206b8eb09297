/**
 * bench/threads: decode tokens/s on the bench shape for each thread count from 1 to the number of cores,
 * for each llama.cpp engine (node-llama-cpp's prebuilt binaries, and the OpenMP build of `npm run build:engine`
 * when it exists), next to what `--threads auto` picks for that engine. This is the measurement behind that
 * default; rerun it on a new machine.
 *
 * One process can load only one engine (both ship libraries with the same names), so each engine runs in a
 * child process, one round at a time, alternating engines (and, inside a round, thread counts): a burst of
 * load from elsewhere then hits every configuration alike. The load average before and after each round is
 * kept next to its numbers.
 *
 * The prebuilt engine runs twice: as node-llama-cpp leaves it (`per-compute`: ggml starts threads for every
 * decode) and with the server's persistent thread pool attached (`persistent`, poll BENCH_POLL [0], when
 * `npm run build:native` built the helper), as `serve` does.
 *
 * Env: BENCH_ENGINE (both [default] | prebuilt | source | auto), BENCH_TOKENS [64], BENCH_REPEATS [3] (rounds).
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { LlamaLogLevel } from "node-llama-cpp";
import type { EngineChoice, EngineInfo } from "../src/engine/engine-build.js";
import { findBuiltEngine } from "../src/engine/engine-build.js";
import { defaultThreadCount, engineInfo, loadLlama } from "../src/engine/llama-runtime.js";
import { attachThreadPool, type ThreadPoolMode, threadPoolMode } from "../src/engine/thread-pool.js";
import { ensureBenchModel, median, round } from "./support/bench-model.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 64);
const ROUNDS = Number(process.env.BENCH_REPEATS ?? 3);
const ENGINE = process.env.BENCH_ENGINE ?? "both";
const counts = Array.from({ length: os.availableParallelism() }, (_, i) => i + 1);
const loadavg = () => os.loadavg().map((v) => round(v, 2));

const POLL = Number(process.env.BENCH_POLL ?? 0);
type Variant = EngineChoice | "pooled";

interface RoundResult {
  engine: EngineInfo;
  threadPool: ThreadPoolMode;
  /** tokens/s by thread count */
  rates: Record<number, number>;
  load_before: number[];
  load_after: number[];
}

/** One round in this process: every thread count once, on the engine `choice`. */
async function measureRound(variant: Variant): Promise<RoundResult> {
  const load_before = loadavg();
  const modelPath = await ensureBenchModel();
  const choice: EngineChoice = variant === "pooled" ? "prebuilt" : variant;
  const llama = await loadLlama("off", LlamaLogLevel.error, process.platform, choice);
  const threadPool: ThreadPoolMode = variant === "pooled" ? "persistent" : llama.buildType === "prebuilt" ? "per-compute" : "openmp";
  llama.maxThreads = 0; // every context gets the threads it asks for
  const model = await llama.loadModel({ modelPath });
  const prompt = model.tokenize("Once upon a time");
  const rates: Record<number, number> = {};
  for (const threads of counts) {
    const context = await model.createContext({ contextSize: 512, threads });
    // the raw pool at this thread count; serve then picks each decode's threads (decodeThreads), which for one
    // sequence on 2 cores is 1
    const pool = attachThreadPool(context, threadPool, threads, POLL);
    const sequence = context.getSequence();
    let first = 0;
    let n = 0;
    for await (const _ of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (n === 0) first = performance.now();
      if (++n >= TOKENS) break;
    }
    rates[threads] = ((n - 1) * 1000) / (performance.now() - first);
    sequence.dispose();
    await context.dispose();
    pool?.free();
  }
  const engine = engineInfo(llama);
  await model.dispose();
  await llama.dispose();
  return { engine, threadPool, rates, load_before, load_after: loadavg() };
}

function runChild(choice: Variant): RoundResult {
  const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_ENGINE: choice, BENCH_CHILD: "1" },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (child.status !== 0) throw new Error(`bench child for engine ${choice} failed (exit ${child.status})`);
  return JSON.parse(child.stdout) as RoundResult;
}

if (process.env.BENCH_CHILD === "1") {
  console.log(JSON.stringify(await measureRound(ENGINE as Variant)));
} else {
  const pooled = threadPoolMode({ openmp: false, gpu: "cpu" }).mode === "persistent";
  const engines: Variant[] =
    ENGINE === "both"
      ? ["prebuilt", ...(pooled ? (["pooled"] as const) : []), ...("manifest" in findBuiltEngine() ? (["source"] as const) : [])]
      : [ENGINE as Variant];
  const rounds = new Map<Variant, RoundResult[]>(engines.map((e) => [e, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which engine goes first, so neither always runs right after the other's load.
    const order = r % 2 === 0 ? engines : [...engines].reverse();
    for (const choice of order) {
      const result = runChild(choice);
      rounds.get(choice)!.push(result);
      console.error(
        `[bench:threads] round ${r + 1}/${ROUNDS} ${result.engine.build} (${result.threadPool}): ${counts.map((c) => `${c}t ${round(result.rates[c]!, 1)}`).join(", ")} tok/s (load ${result.load_before.join(" ")} -> ${result.load_after.join(" ")})`,
      );
    }
  }
  const results = [...rounds.entries()].map(([choice, list]) => {
    const engine = list[0]!.engine;
    const byThreads = counts.map((threads) => {
      const values = list.map((l) => l.rates[threads]!);
      return {
        threads,
        decode_tokens_per_s: round(median(values), 1),
        min: round(Math.min(...values), 1),
        max: round(Math.max(...values), 1),
      };
    });
    const best = byThreads.reduce((a, b) => (b.decode_tokens_per_s > a.decode_tokens_per_s ? b : a));
    return {
      engine: choice,
      build: engine.build,
      openmp: engine.openmp,
      thread_pool: list[0]!.threadPool,
      results: byThreads.map((m) => ({ ...m, ratio_to_best: round(m.decode_tokens_per_s / best.decode_tokens_per_s) })),
      fastest: best.threads,
      server_default: defaultThreadCount(os.availableParallelism(), list[0]!.threadPool),
      load_per_round: list.map((l) => ({ before: l.load_before, after: l.load_after })),
    };
  });
  console.log(
    JSON.stringify({ bench: "threads", cores: os.availableParallelism(), tokens: TOKENS, rounds: ROUNDS, engines: results }, null, 2),
  );
}
