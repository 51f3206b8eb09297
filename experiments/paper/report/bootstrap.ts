import { SeededRandom } from "../../../src/model/seeded-random.js";

/**
 * Paired comparisons with a two-way bootstrap: the uncertainty of a difference between two arms (say LoRI-S and
 * LoRA) comes from which seeds were run and from which test examples were drawn, so one replicate resamples both.
 *
 * A cell is one task: `a[s][i]` and `b[s][i]` are the outcomes (1 correct, 0 wrong) of the two arms on test example
 * i under seed index s. Both arms saw the same examples in the same order, and seed index s is the same seed for
 * every cell. The statistic is the mean over cells of mean_s mean_i (a − c·b), with c = `scaleB` (1 for a plain
 * difference; 0.9 for "a keeps at least 90 % of b", which is a − 0.9·b ≥ 0).
 *
 * One replicate draws S seed indices with replacement (shared by every cell, so a seed's runs stay together) and,
 * per cell, n example indices with replacement (shared by both arms and every seed: the pairing is kept). The
 * interval is the percentile interval of the replicates.
 */

export interface PairedCell {
  /** A label for reports, e.g. the task. */
  readonly label: string;
  /** Outcomes of arm a, per seed index, per example. */
  readonly a: readonly (readonly number[])[];
  /** Outcomes of arm b on the same examples and seed indices. */
  readonly b: readonly (readonly number[])[];
}

export interface BootstrapOptions {
  /** Coefficient of b in a − c·b (default 1). */
  readonly scaleB?: number;
  /** Replicates (default 2000). */
  readonly replicates?: number;
  /** Seed of the resampling: the same inputs and seed give the same interval, bit for bit (default 1). */
  readonly seed?: number;
  /** Coverage of the interval (default 0.95). */
  readonly level?: number;
}

export interface PairedInterval {
  /** The statistic on the data as measured. */
  readonly estimate: number;
  /** Per seed index: mean over cells of mean_i (a − c·b); the paired difference of each seed. */
  readonly perSeed: readonly number[];
  readonly lo: number;
  readonly hi: number;
  readonly level: number;
  readonly seeds: number;
  /** Examples per cell. */
  readonly examples: readonly number[];
}

export function pairedBootstrap(cells: readonly PairedCell[], options: BootstrapOptions = {}): PairedInterval {
  const scaleB = options.scaleB ?? 1;
  const replicates = options.replicates ?? 2000;
  const level = options.level ?? 0.95;
  if (cells.length === 0) throw new RangeError("pairedBootstrap: no cells");
  if (!(level > 0 && level < 1)) throw new RangeError(`pairedBootstrap: level must be in (0, 1), got ${level}`);
  if (!Number.isSafeInteger(replicates) || replicates < 10) throw new RangeError(`pairedBootstrap: replicates must be >= 10`);
  const seeds = cells[0]!.a.length;
  // d[cell][seed][example] = a − c·b
  const diffs = cells.map((cell) => {
    if (cell.a.length !== seeds || cell.b.length !== seeds || seeds === 0) {
      throw new RangeError(`pairedBootstrap: cell ${cell.label} needs the same non-zero seed count in both arms (${seeds})`);
    }
    const n = cell.a[0]!.length;
    if (n === 0) throw new RangeError(`pairedBootstrap: cell ${cell.label} has no examples`);
    return cell.a.map((row, s) => {
      const other = cell.b[s]!;
      if (row.length !== n || other.length !== n) throw new RangeError(`pairedBootstrap: cell ${cell.label} has ragged example lists`);
      return Float64Array.from(row, (x, i) => x - scaleB * other[i]!);
    });
  });
  const mean = (xs: ArrayLike<number>) => {
    let sum = 0;
    for (let i = 0; i < xs.length; i++) sum += xs[i]!;
    return sum / xs.length;
  };
  const perSeed = Array.from({ length: seeds }, (_, s) => mean(diffs.map((d) => mean(d[s]!))));
  const estimate = mean(perSeed);

  const rng = new SeededRandom(options.seed ?? 1, 0xb007);
  const draw = (n: number) => Math.floor(rng.nextFloat() * n);
  const stats = new Float64Array(replicates);
  const seedPick = new Int32Array(seeds);
  for (let r = 0; r < replicates; r++) {
    for (let k = 0; k < seeds; k++) seedPick[k] = draw(seeds);
    let total = 0;
    for (const d of diffs) {
      const n = d[0]!.length;
      // the example resample, shared by the seeds (and already paired: d holds both arms)
      let cellSum = 0;
      for (let j = 0; j < n; j++) {
        const i = draw(n);
        for (let k = 0; k < seeds; k++) cellSum += d[seedPick[k]!]![i]!;
      }
      total += cellSum / (n * seeds);
    }
    stats[r] = total / diffs.length;
  }
  stats.sort();
  const alpha = (1 - level) / 2;
  return {
    estimate,
    perSeed,
    lo: quantile(stats, alpha),
    hi: quantile(stats, 1 - alpha),
    level,
    seeds,
    examples: diffs.map((d) => d[0]!.length),
  };
}

/** Linear-interpolation quantile of sorted values (type 7, as R's default and numpy's "linear"). */
export function quantile(sorted: ArrayLike<number>, p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export type VerdictStatus = "holds" | "does not hold" | "cannot tell at this size";

/**
 * A claim "statistic ≥ threshold" judged from the interval: it holds when the whole interval is at or above the
 * threshold, does not hold when the whole interval is below it, and otherwise the data cannot tell.
 */
export function atLeast(interval: Pick<PairedInterval, "lo" | "hi">, threshold: number): VerdictStatus {
  if (interval.lo >= threshold) return "holds";
  if (interval.hi < threshold) return "does not hold";
  return "cannot tell at this size";
}

/** "statistic > threshold" (strictly better): holds only when the whole interval is above it. */
export function above(interval: Pick<PairedInterval, "lo" | "hi">, threshold: number): VerdictStatus {
  if (interval.lo > threshold) return "holds";
  if (interval.hi <= threshold) return "does not hold";
  return "cannot tell at this size";
}

/** "statistic < threshold": the mirror of atLeast. */
export function below(interval: Pick<PairedInterval, "lo" | "hi">, threshold: number): VerdictStatus {
  if (interval.hi < threshold) return "holds";
  if (interval.lo >= threshold) return "does not hold";
  return "cannot tell at this size";
}

/** A claim made of parts that must all hold: any part that does not hold decides it; else all must hold. */
export function allOf(parts: readonly VerdictStatus[]): VerdictStatus {
  if (parts.includes("does not hold")) return "does not hold";
  if (parts.length > 0 && parts.every((p) => p === "holds")) return "holds";
  return "cannot tell at this size";
}
