// Training cost on the bench shape (docs/background.md section 5): tokens/s and peak RSS of lori-s, lori-d and lora with the same
// data, steps and threads. Run: npx tsx bench/train.ts [--steps N] [--threads N]
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BENCH_SHAPE, createTinyModel } from "../src/model/tiny-model.js";
import { trainAdapter, type TrainResult } from "../src/train/train-adapter.js";
import type { TokenSequence } from "../src/train/token-shards.js";

const { values } = parseArgs({ options: { steps: { type: "string", default: "4" }, threads: { type: "string", default: "1" } } });
const steps = Number(values.steps);
const threads = Number(values.threads);
const dir = await mkdtemp(join(tmpdir(), "lori-bench-train-"));
try {
  const model = join(dir, "bench.gguf");
  await createTinyModel({ out: model, ...BENCH_SHAPE });
  // 16 sequences x 128 byte tokens: 32-token prompt, 96 supervised.
  let x = 12345;
  const next = () => ((x = (x * 1103515245 + 12345) >>> 0) % 250) + 3;
  const sequences: TokenSequence[] = Array.from({ length: 16 }, () => {
    const tokens = Array.from({ length: 128 }, next);
    return { tokens, supervised: tokens.map((_, i) => i >= 32) };
  });
  const adaptersDir = join(dir, "adapters");
  const common = {
    base: model,
    adaptersDir,
    rank: 32,
    seed: 1,
    lr: 1e-4,
    steps,
    batch: 4,
    data: { sequences, label: "bench" },
    run: { gpu: "off" as const, threads, forwardSigint: false },
  };
  const results: Record<string, TrainResult> = {};
  results.lora = await trainAdapter({ ...common, name: "lora", method: "lora" });
  results["lori-d"] = await trainAdapter({ ...common, name: "lori-d", method: "lori-d" });
  // LoRI-S with a 90 % mask taken from the LoRI-D run (same cost as a calibrated mask's second phase).
  results["lori-s"] = await trainAdapter({ ...common, name: "lori-s", method: "lori-s", maskFrom: "lori-d", sparsity: 0.9 });
  const row = (r: TrainResult) => {
    const t = r.adapter.config.lori!.training as Record<string, number>;
    return {
      tokens_per_s: Math.round(t.tokens_per_s!),
      peak_rss_mb: Math.round(t.peak_rss_mb!),
      trainable_params: t.trainable_params,
      adapter_bytes: r.adapterBytes,
    };
  };
  const lora = row(results.lora!);
  const report = Object.fromEntries(
    Object.entries(results).map(([name, r]) => {
      const m = row(r);
      return [
        name,
        {
          ...m,
          ratio_to_lora: {
            tokens_per_s: +(m.tokens_per_s / lora.tokens_per_s).toFixed(3),
            peak_rss_mb: +(m.peak_rss_mb / lora.peak_rss_mb).toFixed(3),
            trainable_params: +(m.trainable_params! / lora.trainable_params!).toFixed(4),
            adapter_bytes: +(m.adapter_bytes / lora.adapter_bytes).toFixed(4),
          },
        },
      ];
    }),
  );
  console.log(
    JSON.stringify({ shape: BENCH_SHAPE, rank: 32, batch: 4, seq_len: 128, steps, threads, backend: "CPU", results: report }, null, 2),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
