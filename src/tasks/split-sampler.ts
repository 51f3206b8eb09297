import { SeededRandom } from "../model/seeded-random.js";
import type { Example, Split, SplitSizes, Splits, TaskId } from "./task.js";

/** One drawn item: `key` identifies it (normally its prompt); `build` makes the example once it is kept. */
export interface Candidate {
  readonly key: string;
  build(id: string): Example;
}

/**
 * Draws one candidate. `slot` is the index in its split the candidate would fill: a task that wants a fixed mix
 * of groups (safety: exactly half harmful) draws from the group that slot calls for.
 */
export type Draw = (rng: SeededRandom, slot: number) => Candidate;

/**
 * Fraction of every task's item space held out from training (by a fixed hash of the key): the test split and,
 * carved out of the same range, the dev split. Train keeps exactly the items it always had, so adapters and files
 * made from the train split before dev existed stay valid.
 */
export const HELD_OUT_PERCENT = 20;
/** The part of the held-out range that is dev (selection: learning rates, steps, merge weights); the rest is test. */
export const DEV_FRACTION_PERCENT = 7;
export const TEST_FRACTION_PERCENT = HELD_OUT_PERCENT - DEV_FRACTION_PERCENT;

export const SPLITS: readonly Split[] = ["train", "dev", "test"];

const STREAMS: Record<TaskId | "base", number> = { math: 1, code: 2, nlu: 3, safety: 4, base: 5 };

/**
 * Draws `sizes.train`, `sizes.dev` (default 0) and `sizes.test` distinct items with a seeded PRNG, one
 * independent stream per split, keeping an item only in the split its key hashes to. So the three splits are
 * disjoint for any seeds, and a split's examples depend only on (task, seed, split, index): `--limit 10`
 * evaluates the first 10 of the default test set.
 */
export function sampleSplits(task: TaskId, seed: number, sizes: SplitSizes, draw: Draw): Splits {
  checkSeed(seed);
  return {
    train: sampleSplit(task, seed, "train", sizes.train, draw),
    dev: sampleSplit(task, seed, "dev", sizes.dev ?? 0, draw),
    test: sampleSplit(task, seed, "test", sizes.test, draw),
  };
}

function sampleSplit(task: TaskId, seed: number, split: Split, count: number, draw: Draw): Example[] {
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`${split} size must be a non-negative integer, got ${count}`);
  // train and test keep the streams they always had (their examples do not change); dev gets its own.
  const stream = split === "dev" ? 100 + STREAMS[task] : STREAMS[task] * 2 + (split === "test" ? 1 : 0);
  const rng = new SeededRandom(seed, stream);
  const seen = new Set<string>();
  const out: Example[] = [];
  // The item space is exhausted (or nearly) when this many draws in a row bring nothing new.
  const maxMisses = 20_000;
  for (let misses = 0; out.length < count; misses++) {
    if (misses >= maxMisses) {
      throw new RangeError(`task ${task}: only ${out.length} distinct ${split} examples found (asked for ${count}); ask for fewer`);
    }
    const candidate = draw(rng, out.length);
    if (splitOf(candidate.key) !== split || seen.has(candidate.key)) continue;
    misses = -1;
    seen.add(candidate.key);
    out.push(candidate.build(`${task}-${split}-${out.length}`));
  }
  return out;
}

/** FNV-1a of a key: the fixed hash that decides its split, for every seed. */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The split an item belongs to, for every seed: train at or above 20 (as before dev existed), below it test, then dev. */
export function splitOf(key: string): Split {
  const bucket = keyHash(key) % 100;
  if (bucket >= HELD_OUT_PERCENT) return "train";
  return bucket < TEST_FRACTION_PERCENT ? "test" : "dev";
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
