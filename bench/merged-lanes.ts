/**
 * bench/merged-lanes: decode tokens/s on the bench shape (F16) for the base model, the base with a rank-32
 * LoRA on all seven projections of every layer (the LoRA path: a compiled GGUF LoRA on the context), and the
 * merged model of that adapter (a merged-weight lane). Rounds are interleaved so machine load hits all three
 * alike; the load average is printed before and after each round, and medians over the rounds are reported.
 * Also reports CPU ms per decoded token (steadier than tokens/s on a shared machine) and the time to write
 * the merged model. Run: `npx tsx bench/merged-lanes.ts` (BENCH_TOKENS,
 * BENCH_REPEATS, BENCH_THREADS override the defaults 64, 3, 1).
 */
import os from "node:os";
import path from "node:path";
import { mkdir, rm, stat } from "node:fs/promises";
import { getLlama, LlamaLogLevel, type LlamaContext } from "node-llama-cpp";
import { readGgufFile } from "../src/gguf/gguf-reader.js";
import { makeAdapter, type LoraModule } from "../src/lora/adapter.js";
import { baseFingerprintOfGguf } from "../src/lora/base-fingerprint.js";
import { compileGgufLora } from "../src/lora/gguf-lora.js";
import { writeMergedModel } from "../src/lora/merged-model.js";
import { GGUF_TENSOR_STEM, TARGET_MODULES } from "../src/lora/target-modules.js";
import { mulberry32 } from "../src/util/mulberry32.js";
import { benchCacheDir, ensureBenchModel, median, round } from "./support/bench-model.js";

const TOKENS = Number(process.env.BENCH_TOKENS ?? 64);
const ROUNDS = Number(process.env.BENCH_REPEATS ?? 3);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const RANK = 32;

const basePath = await ensureBenchModel();
const header = await readGgufFile(basePath);
const random = mulberry32(5);
const modules: LoraModule[] = [];
const layers = Number(header.metadata.get("llama.block_count")?.value);
for (let layer = 0; layer < layers; layer++) {
  for (const module of TARGET_MODULES) {
    const info = header.tensors.find((t) => t.name === `blk.${layer}.${GGUF_TENSOR_STEM[module]}.weight`)!;
    const [inFeatures, outFeatures] = info.shape as [number, number];
    const b = new Float32Array(outFeatures * RANK).map(() => (random() * 2 - 1) * 0.05);
    modules.push({ layer, module, rank: RANK, alpha: 2 * RANK, inFeatures, outFeatures, a: { kind: "seeded", seed: 9 }, b });
  }
}
const adapter = makeAdapter(modules, { baseFingerprint: baseFingerprintOfGguf(header) });
const dir = path.join(benchCacheDir, "merged-lanes");
await mkdir(dir, { recursive: true });
const loraPath = path.join(dir, "rank32-lora.gguf");
const mergedPath = path.join(dir, "rank32-merged.gguf");
await compileGgufLora(adapter, header, loraPath);
const mergeStarted = performance.now();
const mergeCpu = process.cpuUsage();
await writeMergedModel(adapter, basePath, header, mergedPath);
const mergeMs = performance.now() - mergeStarted;
const mergeCpuUsed = process.cpuUsage(mergeCpu);

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error, build: "never" });
const base = await llama.loadModel({ modelPath: basePath });
const merged = await llama.loadModel({ modelPath: mergedPath });
const contextOptions = { contextSize: 512, threads: THREADS };
const contexts: Record<string, LlamaContext> = {
  base: await base.createContext(contextOptions),
  lora: await base.createContext({ ...contextOptions, lora: { adapters: [{ filePath: loraPath, scale: 1 }] } }),
  merged: await merged.createContext(contextOptions),
};
const rates: Record<string, number[]> = { base: [], lora: [], merged: [] };
// CPU time of this process (ggml's compute threads included) per decoded token: unlike tokens/s, it hardly
// moves when other processes compete for the cores, so it is the comparison to trust on a busy machine.
const cpuMs: Record<string, number[]> = { base: [], lora: [], merged: [] };
const loads: Array<{ round: number; before: number[]; after: number[] }> = [];
const prompt = base.tokenize("Once upon a time");
const outputs: Record<string, string> = {};
for (let r = 0; r < ROUNDS; r++) {
  const before = os.loadavg().map((x) => round(x, 2));
  for (const [name, context] of Object.entries(contexts)) {
    const sequence = context.getSequence();
    let first = 0;
    let cpuAtFirst = process.cpuUsage();
    let n = 0;
    const tokens: number[] = [];
    for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (n === 0) {
        first = performance.now();
        cpuAtFirst = process.cpuUsage();
      }
      tokens.push(token);
      if (++n >= TOKENS) break;
    }
    rates[name]!.push(((n - 1) * 1000) / (performance.now() - first));
    const cpu = process.cpuUsage(cpuAtFirst);
    cpuMs[name]!.push((cpu.user + cpu.system) / 1000 / (n - 1));
    outputs[name] = tokens.join(",");
    sequence.dispose();
  }
  loads.push({ round: r + 1, before, after: os.loadavg().map((x) => round(x, 2)) });
}
const tps = Object.fromEntries(Object.entries(rates).map(([name, values]) => [name, round(median(values), 1)]));
console.log(
  JSON.stringify(
    {
      bench: "merged-lanes",
      model: "bench shape (F16, d=512, 8 layers)",
      adapter: `rank ${RANK}, all 7 projections, ${modules.length} modules`,
      cores: os.availableParallelism(),
      threads: THREADS,
      tokens: TOKENS,
      rounds: ROUNDS,
      decode_tokens_per_s: tps,
      cpu_ms_per_token: Object.fromEntries(Object.entries(cpuMs).map(([name, values]) => [name, round(median(values), 3)])),
      samples: Object.fromEntries(Object.entries(rates).map(([name, values]) => [name, values.map((v) => round(v, 1))])),
      merged_over_lora: round(tps.merged! / tps.lora!),
      merged_over_base: round(tps.merged! / tps.base!),
      lora_over_base: round(tps.lora! / tps.base!),
      merged_greedy_equals_lora: outputs.merged === outputs.lora,
      merge_write_ms: Math.round(mergeMs),
      merge_write_cpu_ms: Math.round((mergeCpuUsed.user + mergeCpuUsed.system) / 1000),
      merged_file_bytes: (await stat(mergedPath)).size,
      load_average: loads,
    },
    null,
    2,
  ),
);
for (const context of Object.values(contexts)) await context.dispose();
await base.dispose();
await merged.dispose();
await rm(dir, { recursive: true, force: true });
