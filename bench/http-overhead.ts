/**
 * bench/http-overhead: generation speed through HTTP streaming vs in-process node-llama-cpp, side by side on
 * the bench shape with the same settings, plus time to first token and aggregate throughput with 1 and 4
 * concurrent clients. Prints one JSON object. Targets: ratio >= 0.95; 4 clients beat 1.
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { defaultThreadCount } from "../src/engine/llama-runtime.js";
import { ensureBenchModel, median, round } from "./support/bench-model.js";
import { startServerProcess } from "./support/server-process.js";
import { streamTimed } from "./support/stream-client.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 128);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const THREADS = Number(process.env.BENCH_THREADS ?? defaultThreadCount());
const PROMPT = "Once upon a time there was a benchmark";

/** In-process node-llama-cpp decoding, the baseline: same model, threads, greedy, EOS ignored. */
async function openInProcess(modelPath: string) {
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never" });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ sequences: 1, contextSize: 1024, threads: THREADS });
  const sequence = context.getSequence();
  return {
    async decode(): Promise<{ decodeTokensPerSecond: number; ttftMs: number }> {
      await sequence.clearHistory();
      const start = performance.now();
      let first = 0;
      let count = 0;
      for await (const _token of sequence.evaluate(model.tokenize(PROMPT), { temperature: 0, yieldEogToken: true })) {
        if (count === 0) first = performance.now();
        if (++count >= TOKENS) break;
      }
      const end = performance.now();
      return { decodeTokensPerSecond: ((count - 1) * 1000) / (end - first), ttftMs: first - start };
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}

async function main() {
  const modelPath = await ensureBenchModel();
  const inProcess = await openInProcess(modelPath);
  const server = await startServerProcess([
    "--model",
    `bench=${modelPath}`,
    "--threads",
    String(THREADS),
    "--gpu",
    "off",
    "--parallel",
    "4",
    "--context-size",
    "1024",
  ]);
  try {
    const body = { model: "bench", prompt: PROMPT, max_tokens: TOKENS, temperature: 0, ignore_eos: true };
    await streamTimed(server.url, { ...body, max_tokens: 8 }); // warm-up both
    await inProcess.decode();
    // Alternate the two so both see the same machine load (these machines are noisy).
    const local = [];
    const http = [];
    for (let r = 0; r < REPEATS; r++) {
      local.push(await inProcess.decode());
      http.push(await streamTimed(server.url, body));
    }
    const aggregate = async (clients: number) => {
      const start = performance.now();
      const results = await Promise.all(
        Array.from({ length: clients }, (_, i) => streamTimed(server.url, { ...body, prompt: `${PROMPT} ${i}` })),
      );
      const seconds = (performance.now() - start) / 1000;
      return results.reduce((sum, r) => sum + r.tokens, 0) / seconds;
    };
    const one = await aggregate(1);
    const four = await aggregate(4);
    const localRate = median(local.map((s) => s.decodeTokensPerSecond));
    const httpRate = median(http.map((s) => s.decodeTokensPerSecond));
    console.log(
      JSON.stringify(
        {
          bench: "http-overhead",
          model: "bench shape (llama F16 d=512, 8 layers, 8/4 heads, ff 1408)",
          threads: THREADS,
          tokens_per_request: TOKENS,
          repeats: REPEATS,
          in_process_decode_tokens_per_s: round(localRate, 1),
          http_stream_decode_tokens_per_s: round(httpRate, 1),
          ratio_http_vs_in_process: round(httpRate / localRate),
          target_ratio: 0.95,
          ttft_ms: { in_process: round(median(local.map((s) => s.ttftMs)), 1), http: round(median(http.map((s) => s.ttftMs)), 1) },
          aggregate_tokens_per_s: { clients_1: round(one, 1), clients_4: round(four, 1), ratio_4_vs_1: round(four / one) },
        },
        null,
        2,
      ),
    );
  } finally {
    await server.stop();
    await inProcess.close();
  }
}

await main();
