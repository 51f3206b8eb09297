/**
 * bench/threads: decode tokens/s of node-llama-cpp on the bench shape for each thread count from 1 to the
 * number of cores, measured side by side (interleaved rounds), next to the server's `--threads auto`
 * default. This is the measurement behind that default; rerun it on a new machine.
 */
import os from "node:os";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { defaultThreadCount } from "../src/engine/llama-runtime.js";
import { ensureBenchModel, median, round } from "./support/bench-model.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 64);
const ROUNDS = Number(process.env.BENCH_REPEATS ?? 3);

const modelPath = await ensureBenchModel();
const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never", maxThreads: os.availableParallelism() });
const model = await llama.loadModel({ modelPath });
const counts = Array.from({ length: os.availableParallelism() }, (_, i) => i + 1);
const contexts = new Map<number, Awaited<ReturnType<typeof model.createContext>>>();
for (const threads of counts) contexts.set(threads, await model.createContext({ contextSize: 512, threads }));
const rates = new Map<number, number[]>(counts.map((c) => [c, []]));
const prompt = model.tokenize("Once upon a time");
for (let r = 0; r < ROUNDS; r++) {
  for (const threads of counts) {
    const sequence = contexts.get(threads)!.getSequence();
    let first = 0;
    let n = 0;
    for await (const _ of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (n === 0) first = performance.now();
      if (++n >= TOKENS) break;
    }
    rates.get(threads)!.push(((n - 1) * 1000) / (performance.now() - first));
    sequence.dispose();
  }
}
const medians = counts.map((threads) => ({ threads, decode_tokens_per_s: round(median(rates.get(threads)!), 1) }));
const best = medians.reduce((a, b) => (b.decode_tokens_per_s > a.decode_tokens_per_s ? b : a));
console.log(
  JSON.stringify(
    {
      bench: "threads",
      cores: os.availableParallelism(),
      tokens: TOKENS,
      rounds: ROUNDS,
      results: medians.map((m) => ({ ...m, ratio_to_best: round(m.decode_tokens_per_s / best.decode_tokens_per_s) })),
      fastest: best.threads,
      server_default: defaultThreadCount(),
    },
    null,
    2,
  ),
);
for (const context of contexts.values()) await context.dispose();
await model.dispose();
