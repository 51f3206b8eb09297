import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { BENCH_SHAPE, createTinyModel } from "../../src/model/tiny-model.js";

/** Benchmarks' scratch space, outside the repository. */
export const benchCacheDir = process.env.LORI_BENCH_CACHE ?? path.join(tmpdir(), "lori-server-bench");

/** The bench shape (llama, F16, d=512, 8 layers, 8 heads, 4 kv heads, ff 1408), generated once. */
export async function ensureBenchModel(): Promise<string> {
  const file = path.join(benchCacheDir, "bench-shape-f16.gguf");
  if (!existsSync(file)) {
    await mkdir(benchCacheDir, { recursive: true });
    await createTinyModel({ out: file, ...BENCH_SHAPE, seed: 1, name: "bench-shape" });
  }
  return file;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
