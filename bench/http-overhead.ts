/**
 * bench/http-overhead: generation speed through HTTP streaming vs in-process node-llama-cpp, side by side on
 * the bench shape with the same settings, plus time to first token and aggregate throughput with 1 and 4
 * concurrent clients. Prints one JSON object. Targets: ratio >= 0.95; 4 clients beat 1.
 */
import { getLlama, LlamaLogLevel, TokenBias } from "node-llama-cpp";
import { defaultThreadCount } from "../src/engine/llama-runtime.js";
import { ensureBenchModel, median, round } from "./support/bench-model.js";
import { startServerProcess, streamCompletion } from "./support/server-process.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 128);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const THREADS = Number(process.env.BENCH_THREADS ?? defaultThreadCount());
const PROMPT = "Once upon a time there was a benchmark";

async function inProcessDecode(modelPath: string): Promise<{ decodeTokensPerSecond: number; ttftMs: number }> {
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never" });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ sequences: 1, contextSize: 1024, threads: THREADS });
  const sequence = context.getSequence();
  const bias = new TokenBias(model.tokenizer);
  for (const t of [model.tokens.eos, model.tokens.eot]) if (t !== null) bias.set(t, "never");
  const rates: number[] = [];
  const ttfts: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    await sequence.clearHistory();
    const prompt = model.tokenize(PROMPT);
    const start = performance.now();
    let first = 0;
    let count = 0;
    for await (const _token of sequence.evaluate(prompt, { temperature: 0, tokenBias: bias })) {
      if (count === 0) first = performance.now();
      if (++count >= TOKENS) break;
    }
    const end = performance.now();
    ttfts.push(first - start);
    rates.push(((count - 1) * 1000) / (end - first));
  }
  await context.dispose();
  await model.dispose();
  return { decodeTokensPerSecond: median(rates), ttftMs: median(ttfts) };
}

async function main() {
  const modelPath = await ensureBenchModel();
  const inProcess = await inProcessDecode(modelPath);
  const server = await startServerProcess(["--model", `bench=${modelPath}`, "--threads", String(THREADS), "--gpu", "off", "--parallel", "4", "--context-size", "1024"]);
  try {
    const body = { model: "bench", prompt: PROMPT, max_tokens: TOKENS, temperature: 0, ignore_eos: true };
    await streamCompletion(server.url, { ...body, max_tokens: 8 }); // warm-up
    const single = [];
    for (let r = 0; r < REPEATS; r++) single.push(await streamCompletion(server.url, body));
    const aggregate = async (clients: number) => {
      const start = performance.now();
      const results = await Promise.all(Array.from({ length: clients }, (_, i) => streamCompletion(server.url, { ...body, prompt: `${PROMPT} ${i}` })));
      const seconds = (performance.now() - start) / 1000;
      return results.reduce((sum, r) => sum + r.tokens, 0) / seconds;
    };
    const one = await aggregate(1);
    const four = await aggregate(4);
    const httpRate = median(single.map((s) => s.decodeTokensPerSecond));
    console.log(
      JSON.stringify(
        {
          bench: "http-overhead",
          model: "bench shape (llama F16 d=512, 8 layers, 8/4 heads, ff 1408)",
          threads: THREADS,
          tokens_per_request: TOKENS,
          repeats: REPEATS,
          in_process_decode_tokens_per_s: round(inProcess.decodeTokensPerSecond, 1),
          http_stream_decode_tokens_per_s: round(httpRate, 1),
          ratio_http_vs_in_process: round(httpRate / inProcess.decodeTokensPerSecond),
          target_ratio: 0.95,
          ttft_ms: { in_process: round(inProcess.ttftMs, 1), http: round(median(single.map((s) => s.ttftMs)), 1) },
          aggregate_tokens_per_s: { clients_1: round(one, 1), clients_4: round(four, 1), ratio_4_vs_1: round(four / one) },
        },
        null,
        2,
      ),
    );
  } finally {
    await server.stop();
  }
}

await main();
