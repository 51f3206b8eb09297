import { materializeA, moduleKey, moduleScale, type Adapter, type LoraModule } from "./adapter.js";
import { maskBit } from "./mask.js";
import type { TargetModule } from "./target-modules.js";

/**
 * How much two adapters can interfere when combined (LoRI's argument: sparse, rarely overlapping B masks and
 * near-orthogonal random A subspaces). Three measures per shared module:
 *  - Jaccard overlap of B masks (mask if stored, else B != 0);
 *  - principal angles between the row spaces of A1 and A2 (90 deg = orthogonal);
 *  - the relative size of the cross terms a linear merge adds:
 *    ||sqrt(c1 c2)(B1 A2 + B2 A1)||_F / ||c1 B1 A1 + c2 B2 A2||_F, with c = weight * alpha / r.
 * Norms use r x r Gram matrices, never the dense [out, in] products, so 8B-sized modules stay cheap.
 */

export interface ModuleInterference {
  readonly layer: number;
  readonly module: TargetModule;
  /** |M1 ∩ M2| / |M1 ∪ M2|; 0 when both are empty; null when the ranks (so B shapes) differ. */
  readonly jaccard: number | null;
  /** Principal angles in degrees, ascending, min(r1, r2) of them. */
  readonly anglesDeg: number[];
  /** null when a linear merge is undefined (unequal ranks, or c1 c2 < 0). */
  readonly crossTermRatio: number | null;
}

export interface InterferenceReport {
  readonly modules: ModuleInterference[];
  /** Intersection over union summed over all shared modules. */
  readonly globalJaccard: number;
  /** sqrt(sum cross^2) / sqrt(sum direct^2) over modules where it is defined; null if none. */
  readonly globalCrossTermRatio: number | null;
}

function support(m: LoraModule): (i: number) => boolean {
  return m.mask ? (i) => maskBit(m.mask!, i) : (i) => m.b[i] !== 0;
}

export function maskCounts(m1: LoraModule, m2: LoraModule): { intersection: number; union: number } {
  const s1 = support(m1);
  const s2 = support(m2);
  let intersection = 0;
  let union = 0;
  for (let i = 0; i < m1.b.length; i++) {
    const x = s1(i);
    const y = s2(i);
    if (x && y) intersection++;
    if (x || y) union++;
  }
  return { intersection, union };
}

function euclidean(v: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i]! * v[i]!;
  return Math.sqrt(sum);
}

/** Orthonormal basis of the row space of a [rows, cols] matrix (modified Gram-Schmidt, twice), float64. */
export function orthonormalRows(matrix: ArrayLike<number>, rows: number, cols: number): Float64Array[] {
  const basis: Float64Array[] = [];
  for (let r = 0; r < rows; r++) {
    const v = Float64Array.from({ length: cols }, (_, j) => matrix[r * cols + j]!);
    const original = euclidean(v);
    // A second pass restores orthogonality lost to cancellation (Kahan's "twice is enough").
    for (let pass = 0; pass < 2; pass++) {
      for (const q of basis) {
        let dot = 0;
        for (let j = 0; j < cols; j++) dot += q[j]! * v[j]!;
        for (let j = 0; j < cols; j++) v[j]! -= dot * q[j]!;
      }
    }
    const norm = euclidean(v);
    if (norm > 1e-10 * original && norm > 0) basis.push(v.map((x) => x / norm));
  }
  return basis;
}

/** Singular values (descending) of a small [rows, cols] matrix by one-sided Jacobi rotations. */
export function singularValues(matrix: ArrayLike<number>, rows: number, cols: number): number[] {
  // Work on the orientation with fewer columns: the rotations act on column pairs.
  const transpose = cols > rows;
  const m = transpose ? cols : rows;
  const n = transpose ? rows : cols;
  const columns = Array.from({ length: n }, (_, c) =>
    Float64Array.from({ length: m }, (_, r) => (transpose ? matrix[c * cols + r]! : matrix[r * cols + c]!)),
  );
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const up = columns[p]!;
        const uq = columns[q]!;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          alpha += up[i]! * up[i]!;
          beta += uq[i]! * uq[i]!;
          gamma += up[i]! * uq[i]!;
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = up[i]!;
          const y = uq[i]!;
          up[i] = c * x - s * y;
          uq[i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  return columns.map(euclidean).sort((x, y) => y - x);
}

/** Principal angles (degrees, ascending) between the row spaces of A1 [r1, in] and A2 [r2, in]. */
export function principalAngles(a1: ArrayLike<number>, r1: number, a2: ArrayLike<number>, r2: number, inFeatures: number): number[] {
  const q1 = orthonormalRows(a1, r1, inFeatures);
  const q2 = orthonormalRows(a2, r2, inFeatures);
  const cosines = new Float64Array(q1.length * q2.length);
  q1.forEach((x, i) =>
    q2.forEach((y, j) => {
      let dot = 0;
      for (let k = 0; k < inFeatures; k++) dot += x[k]! * y[k]!;
      cosines[i * q2.length + j] = dot;
    }),
  );
  const sigma = singularValues(cosines, q1.length, q2.length).slice(0, Math.min(q1.length, q2.length));
  return sigma.map((s) => (Math.acos(Math.min(1, Math.max(0, s))) * 180) / Math.PI);
}

/** G = X^T Y for X [n, rx], Y [n, ry] row-major: the [rx, ry] Gram matrix of their columns. */
function gramColumns(x: Float32Array, rx: number, y: Float32Array, ry: number, n: number): Float64Array {
  const g = new Float64Array(rx * ry);
  for (let i = 0; i < n; i++) for (let p = 0; p < rx; p++) for (let q = 0; q < ry; q++) g[p * ry + q]! += x[i * rx + p]! * y[i * ry + q]!;
  return g;
}

/** G = X Y^T for X [rx, n], Y [ry, n] row-major: the [rx, ry] Gram matrix of their rows. */
function gramRows(x: Float32Array, rx: number, y: Float32Array, ry: number, n: number): Float64Array {
  const g = new Float64Array(rx * ry);
  for (let p = 0; p < rx; p++)
    for (let q = 0; q < ry; q++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += x[p * n + k]! * y[q * n + k]!;
      g[p * ry + q] = dot;
    }
  return g;
}

/** tr(X Y) for X [r, r], Y [r, r]. */
function traceOfProduct(x: Float64Array, y: Float64Array, r: number): number {
  let t = 0;
  for (let p = 0; p < r; p++) for (let q = 0; q < r; q++) t += x[p * r + q]! * y[q * r + p]!;
  return t;
}

/**
 * Squared Frobenius norms of the linear-merge cross term and of the exact sum, for equal ranks:
 * ||sum_t k_t B_{i_t} A_{j_t}||^2 = sum_{t,u} k_t k_u tr((B_{i_t}^T B_{i_u}) (A_{j_u} A_{j_t}^T)).
 */
export function crossTermNorms(m1: LoraModule, c1: number, m2: LoraModule, c2: number): { cross: number; direct: number } | null {
  if (m1.rank !== m2.rank || c1 * c2 < 0) return null;
  const r = m1.rank;
  const a = [materializeA(m1), materializeA(m2)];
  const b = [m1.b, m2.b];
  const gb = [0, 1].map((i) => [0, 1].map((j) => gramColumns(b[i]!, r, b[j]!, r, m1.outFeatures)));
  const ga = [0, 1].map((i) => [0, 1].map((j) => gramRows(a[i]!, r, a[j]!, r, m1.inFeatures)));
  const normSq = (terms: readonly [number, number, number][]) => {
    let total = 0;
    for (const [kt, it, jt] of terms) for (const [ku, iu, ju] of terms) total += kt * ku * traceOfProduct(gb[it]![iu]!, ga[ju]![jt]!, r);
    return Math.max(0, total);
  };
  const root = Math.sqrt(c1 * c2);
  return {
    cross: normSq([
      [root, 0, 1],
      [root, 1, 0],
    ]),
    direct: normSq([
      [c1, 0, 0],
      [c2, 1, 1],
    ]),
  };
}

/** Compares every module the two adapters share (same layer, projection and shape). */
export function analyzeInterference(x: Adapter, y: Adapter, weights: readonly [number, number] = [1, 1]): InterferenceReport {
  const others = new Map(y.modules.map((m) => [moduleKey(m.layer, m.module), m]));
  const modules: ModuleInterference[] = [];
  let intersection = 0;
  let union = 0;
  let cross = 0;
  let direct = 0;
  let anyCross = false;
  for (const m1 of x.modules) {
    const m2 = others.get(moduleKey(m1.layer, m1.module));
    if (!m2 || m2.inFeatures !== m1.inFeatures || m2.outFeatures !== m1.outFeatures) continue;
    // Masks are compared entry by entry, which needs equal B shapes (equal ranks).
    const counts = m1.rank === m2.rank ? maskCounts(m1, m2) : null;
    intersection += counts?.intersection ?? 0;
    union += counts?.union ?? 0;
    const norms = crossTermNorms(
      m1,
      weights[0] * moduleScale(m1, x.config.use_rslora),
      m2,
      weights[1] * moduleScale(m2, y.config.use_rslora),
    );
    if (norms) {
      anyCross = true;
      cross += norms.cross;
      direct += norms.direct;
    }
    modules.push({
      layer: m1.layer,
      module: m1.module,
      jaccard: counts === null ? null : counts.union === 0 ? 0 : counts.intersection / counts.union,
      anglesDeg: principalAngles(materializeA(m1), m1.rank, materializeA(m2), m2.rank, m1.inFeatures),
      crossTermRatio: norms ? (norms.direct === 0 ? 0 : Math.sqrt(norms.cross / norms.direct)) : null,
    });
  }
  return {
    modules,
    globalJaccard: union === 0 ? 0 : intersection / union,
    globalCrossTermRatio: anyCross ? (direct === 0 ? 0 : Math.sqrt(cross / direct)) : null,
  };
}
