import { SeededRandom } from "../model/seeded-random.js";
import type { Example, SplitSizes, Splits, TaskId } from "./task.js";

/** One drawn item: `key` identifies it (normally its prompt); `build` makes the example once it is kept. */
export interface Candidate {
  readonly key: string;
  build(id: string): Example;
}

/** Fraction of every task's item space reserved for the test split (by a fixed hash of the key). */
export const TEST_FRACTION_PERCENT = 20;

const STREAMS: Record<TaskId | "base", number> = { math: 1, code: 2, nlu: 3, safety: 4, base: 5 };

/**
 * Draws `sizes.train` and `sizes.test` distinct items with a seeded PRNG, one independent stream per split, keeping
 * an item only in the split its key hashes to. So train and test are disjoint for any seeds, and a split's
 * examples depend only on (task, seed, split, index): `--limit 10` evaluates the first 10 of the default test set.
 */
export function sampleSplits(task: TaskId, seed: number, sizes: SplitSizes, draw: (rng: SeededRandom) => Candidate): Splits {
  checkSeed(seed);
  return {
    train: sampleSplit(task, seed, "train", sizes.train, draw),
    test: sampleSplit(task, seed, "test", sizes.test, draw),
  };
}

function sampleSplit(
  task: TaskId,
  seed: number,
  split: "train" | "test",
  count: number,
  draw: (rng: SeededRandom) => Candidate,
): Example[] {
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`${split} size must be a non-negative integer, got ${count}`);
  const rng = new SeededRandom(seed, STREAMS[task] * 2 + (split === "test" ? 1 : 0));
  const seen = new Set<string>();
  const out: Example[] = [];
  // The item space is exhausted (or nearly) when this many draws in a row bring nothing new.
  const maxMisses = 20_000;
  for (let misses = 0; out.length < count; misses++) {
    if (misses >= maxMisses) {
      throw new RangeError(`task ${task}: only ${out.length} distinct ${split} examples found (asked for ${count}); ask for fewer`);
    }
    const candidate = draw(rng);
    if (splitOf(candidate.key) !== split || seen.has(candidate.key)) continue;
    misses = -1;
    seen.add(candidate.key);
    out.push(candidate.build(`${task}-${split}-${out.length}`));
  }
  return out;
}

/** The split an item belongs to, for every seed: FNV-1a of its key. */
export function splitOf(key: string): "train" | "test" {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 100 < TEST_FRACTION_PERCENT ? "test" : "train";
}

export function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
}

export function streamOf(name: keyof typeof STREAMS): number {
  return STREAMS[name] * 2;
}

/** Uniform integer in [lo, hi]. */
export function randInt(rng: SeededRandom, lo: number, hi: number): number {
  return lo + Math.floor(rng.nextFloat() * (hi - lo + 1));
}

export function pick<T>(rng: SeededRandom, items: readonly T[]): T {
  return items[Math.floor(rng.nextFloat() * items.length)]!;
}

/** `count` distinct items in random order. */
export function pickDistinct<T>(rng: SeededRandom, items: readonly T[], count: number): T[] {
  const pool = [...items];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rng.nextFloat() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}
