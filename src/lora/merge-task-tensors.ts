import { philox4x32First } from "./philox.js";

/**
 * PEFT's merge_utils on plain float64 arrays: how the A/B-wise merges (magnitude_prune, ties, dare_linear,
 * dare_ties) combine one factor's "task tensors" (the same factor of each input, flattened row-major). Each
 * function takes the unweighted tensors and the per-input weights, as PEFT's do.
 */

export type MajoritySignMethod = "total" | "frequency";

/**
 * The fraction `density` of entries with the largest |x| survive, the rest become 0: PEFT keeps the top
 * int(density * numel) by magnitude (torch.topk). torch leaves the choice among equal magnitudes at the cut
 * unspecified; here the lowest flat indices win, so the result is deterministic. density >= 1 keeps everything.
 */
export function magnitudePrune(tensor: Float64Array, density: number): Float64Array {
  if (density >= 1) return Float64Array.from(tensor);
  const k = Math.trunc(density * tensor.length);
  const out = new Float64Array(tensor.length);
  if (k === 0) return out;
  const threshold = kthLargest(tensor.map(Math.abs), k);
  let above = 0;
  for (let i = 0; i < tensor.length; i++) if (Math.abs(tensor[i]!) > threshold) above++;
  let ties = k - above; // how many entries equal to the threshold still fit
  for (let i = 0; i < tensor.length; i++) {
    const magnitude = Math.abs(tensor[i]!);
    if (magnitude > threshold) out[i] = tensor[i]!;
    else if (magnitude === threshold && ties > 0) {
      out[i] = tensor[i]!;
      ties--;
    }
  }
  return out;
}

/**
 * The k-th largest value (1-based) of `values`, which it reorders: quickselect with a three-way partition, so
 * the many equal values of a sparse B (its zeros) cost one pass instead of degrading it to quadratic time.
 */
function kthLargest(values: Float64Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const mid = lo + ((hi - lo) >> 1);
    // Median of three as the pivot: sorted or constant runs do not make it quadratic.
    const [x, y, z] = [values[lo]!, values[mid]!, values[hi]!];
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    // Descending: [lo, gt) > pivot, [gt, i) == pivot, (lt, hi] < pivot.
    let gt = lo;
    let i = lo;
    let lt = hi;
    while (i <= lt) {
      const value = values[i]!;
      if (value > pivot) {
        values[i] = values[gt]!;
        values[gt++] = value;
        i++;
      } else if (value < pivot) {
        values[i] = values[lt]!;
        values[lt--] = value;
      } else i++;
    }
    if (target < gt) hi = gt - 1;
    else if (target > lt) lo = lt + 1;
    else return pivot;
  }
  return values[lo]!;
}

/** Identifies one task tensor's random stream for dare (see dareKeeps). */
export interface DareStream {
  readonly seed: number;
  readonly layer: number;
  readonly moduleId: number;
  /** The input's position in the merge. */
  readonly input: number;
  readonly side: "A" | "B";
}

const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_MINUS_24 = 2 ** -24;
/** ASCII "DARE": seeded A uses this counter word for module ids 0..8, so dare draws never repeat an A draw. */
const DARE_TAG = 0x44415245;

/**
 * dare's Bernoulli(density) draw for one entry, reproducible bit for bit from the seed (PEFT draws from
 * torch's global generator instead, so its draws cannot be reproduced here):
 *   key     = [seed mod 2^32, floor(seed / 2^32)]
 *   counter = [flat index, 2 * input + (side B ? 1 : 0), "DARE" = 0x44415245, 16 * layer + module id]
 *   u       = (first Philox4x32-10 output word >>> 8) * 2^-24 in [0, 1)
 *   kept   <=> u < density
 */
export function dareKeeps(stream: DareStream, index: number, density: number): boolean {
  const x = philox4x32First(
    index,
    2 * stream.input + (stream.side === "B" ? 1 : 0),
    DARE_TAG,
    (16 * stream.layer + stream.moduleId) >>> 0,
    stream.seed % TWO_POW_32,
    Math.floor(stream.seed / TWO_POW_32),
  );
  return (x >>> 8) * TWO_POW_MINUS_24 < density;
}

/** dare's random pruning: each entry survives with probability `density`, survivors are scaled by 1/density. */
export function darePrune(tensor: Float64Array, density: number, stream: DareStream): Float64Array {
  // PEFT's prune() returns the tensor untouched for density >= 1 (no draw, no rescale).
  if (density >= 1) return Float64Array.from(tensor);
  const out = new Float64Array(tensor.length);
  for (let i = 0; i < tensor.length; i++) if (tensor[i] !== 0 && dareKeeps(stream, i, density)) out[i] = tensor[i]! / density;
  return out;
}

/** task_arithmetic: sum_i w_i T_i. */
export function weightedTaskSum(tensors: readonly Float64Array[], weights: readonly number[]): Float64Array {
  const out = new Float64Array(tensors[0]!.length);
  tensors.forEach((t, i) => {
    const w = weights[i]!;
    for (let j = 0; j < out.length; j++) out[j]! += w * t[j]!;
  });
  return out;
}

/**
 * ties' sign election and disjoint merge. Per entry, the majority sign is elected from the (pruned,
 * unweighted) task tensors: "total" = sign of their sum, "frequency" = sign of the count of positive minus
 * negative entries, a tie (0) electing +. The result is the mean of the weighted entries w_i T_i whose
 * unweighted sign equals the elected one (zeros never agree), or 0 when none does.
 */
export function disjointMerge(tensors: readonly Float64Array[], weights: readonly number[], method: MajoritySignMethod): Float64Array {
  const out = new Float64Array(tensors[0]!.length);
  for (let j = 0; j < out.length; j++) {
    let vote = 0;
    for (const t of tensors) vote += method === "total" ? t[j]! : Math.sign(t[j]!);
    const elected = vote >= 0 ? 1 : -1;
    let sum = 0;
    let count = 0;
    tensors.forEach((t, i) => {
      if (Math.sign(t[j]!) === elected) {
        sum += weights[i]! * t[j]!;
        count++;
      }
    });
    out[j] = count === 0 ? 0 : sum / count;
  }
  return out;
}
