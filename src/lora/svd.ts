/**
 * Truncated SVD of a low-rank product W = B A (B [m, R], A [R, n], row-major, float64), dependency-free, for
 * the `svd` merge. W is never formed: with thin QRs B = Q_B R_B and A^T = Q_A R_A, W = Q_B (R_B R_A^T) Q_A^T,
 * so W's singular values and vectors are those of the small core M = R_B R_A^T (at most R x R) mapped through
 * the orthonormal Q_B and Q_A. Householder QR and one-sided Jacobi (Hestenes) are both backward stable and need
 * no pivoting; rank-deficient inputs (a shared seeded A stacked n times, LoRI-S B with empty columns) are fine.
 *
 * Cost per module: the QRs ~2 (m + n) R^2 multiply-adds, Jacobi ~3 R^3 per sweep (typically 6-10 sweeps), the
 * result ~2 (m + n) p k (Q is applied to the k kept vectors only). For R = 64 (four rank-16 adapters) on a
 * 4096 x 14336 projection that is ~1.6e8 multiply-adds: 1.4 s measured on a 2-core machine shared with a load
 * of ~23, so well under that alone. Forming W and taking its SVD directly would cost ~m n min(m, n) ~ 2.4e11.
 */

/**
 * Thin Householder QR of X [rows, cols] (row-major): R as p rows of length `cols` (upper triangular),
 * p = min(rows, cols), and Q kept as its p reflectors (apply it with `applyQ`: only the k columns the result
 * needs are ever formed, not all p). Works on columns stored contiguously, so every inner loop runs along
 * memory.
 */
export interface HouseholderQr {
  readonly rows: number;
  readonly p: number;
  readonly r: readonly Float64Array[];
  readonly reflectors: ReadonlyArray<{ readonly v: Float64Array; readonly beta: number }>;
}

export function householderQr(x: Float64Array, rows: number, cols: number): HouseholderQr {
  const p = Math.min(rows, cols);
  const columns = Array.from({ length: cols }, (_, j) => {
    const column = new Float64Array(rows);
    for (let i = 0; i < rows; i++) column[i] = x[i * cols + j]!;
    return column;
  });
  const reflectors: Array<{ v: Float64Array; beta: number }> = [];
  for (let k = 0; k < p; k++) {
    const xk = columns[k]!;
    let norm = 0;
    for (let i = k; i < rows; i++) norm += xk[i]! * xk[i]!;
    norm = Math.sqrt(norm);
    // v lives on rows k.. (stored full length, zero above k, so loops need no offset arithmetic).
    const v = new Float64Array(rows);
    if (norm === 0) {
      // A zero column: nothing to annihilate; the identity reflector (beta 0) keeps Q orthonormal.
      reflectors.push({ v, beta: 0 });
      continue;
    }
    const alpha = xk[k]! >= 0 ? -norm : norm;
    for (let i = k; i < rows; i++) v[i] = xk[i]!;
    v[k] = xk[k]! - alpha;
    let vv = 0;
    for (let i = k; i < rows; i++) vv += v[i]! * v[i]!;
    const beta = vv === 0 ? 0 : 2 / vv;
    for (let j = k; j < cols; j++) applyReflector(v, beta, k, columns[j]!);
    reflectors.push({ v, beta });
  }
  const r = Array.from({ length: p }, (_, i) => {
    const row = new Float64Array(cols);
    for (let j = i; j < cols; j++) row[j] = columns[j]![i]!;
    return row;
  });
  return { rows, p, r, reflectors };
}

/** Q y for y of length p: H_0 H_1 ... H_{p-1} applied to [y; 0], last reflector first. */
export function applyQ(qr: HouseholderQr, y: ArrayLike<number>): Float64Array {
  const out = new Float64Array(qr.rows);
  for (let i = 0; i < qr.p; i++) out[i] = y[i]!;
  for (let k = qr.p - 1; k >= 0; k--) {
    const { v, beta } = qr.reflectors[k]!;
    if (beta !== 0) applyReflector(v, beta, k, out);
  }
  return out;
}

/** column -= beta v (v^T column), v non-zero from row k on. */
function applyReflector(v: Float64Array, beta: number, k: number, column: Float64Array): void {
  let dot = 0;
  for (let i = k; i < v.length; i++) dot += v[i]! * column[i]!;
  const f = beta * dot;
  if (f === 0) return;
  for (let i = k; i < v.length; i++) column[i]! -= f * v[i]!;
}

/** Rotations stop when every column pair is orthogonal to this relative precision. */
const JACOBI_TOLERANCE = 1e-15;
/** Jacobi converges quadratically; 60 sweeps is far beyond what any input needs and bounds the loop. */
const MAX_SWEEPS = 60;

/**
 * SVD of a small dense M [rows, cols] by one-sided Jacobi: returns U S as `us` [rows, t] and V [cols, t],
 * t = min(rows, cols), columns ordered by decreasing singular value `s`. U S is returned instead of U so that
 * zero singular values need no division.
 */
export function jacobiSvd(m: Float64Array, rows: number, cols: number): { us: Float64Array; s: Float64Array; v: Float64Array; t: number } {
  if (rows < cols) {
    // M^T = V S U^T: run on the transpose, then U S = M V.
    const mt = new Float64Array(cols * rows);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) mt[j * rows + i] = m[i * cols + j]!;
    const inner = jacobiSvd(mt, cols, rows); // inner.v = U [rows, t], inner.us = V S [cols, t]
    const t = inner.t;
    const v = new Float64Array(cols * t);
    const us = new Float64Array(rows * t);
    for (let k = 0; k < t; k++) {
      const sk = inner.s[k]!;
      for (let j = 0; j < cols; j++) v[j * t + k] = sk === 0 ? 0 : inner.us[j * t + k]! / sk;
      for (let i = 0; i < rows; i++) us[i * t + k] = inner.v[i * t + k]! * sk;
    }
    return { us, s: inner.s, v, t };
  }
  const t = cols;
  // Columns stored contiguously (G = M V = U S is rotated until its columns are mutually orthogonal).
  const g = Array.from({ length: cols }, (_, j) => {
    const column = new Float64Array(rows);
    for (let i = 0; i < rows; i++) column[i] = m[i * cols + j]!;
    return column;
  });
  const v = Array.from({ length: cols }, (_, j) => {
    const column = new Float64Array(cols);
    column[j] = 1;
    return column;
  });
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < cols - 1; p++) {
      for (let q = p + 1; q < cols; q++) {
        const gp = g[p]!;
        const gq = g[q]!;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < rows; i++) {
          alpha += gp[i]! * gp[i]!;
          beta += gq[i]! * gq[i]!;
          gamma += gp[i]! * gq[i]!;
        }
        if (gamma === 0 || Math.abs(gamma) <= JACOBI_TOLERANCE * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const tan = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + tan * tan);
        const s = c * tan;
        rotate(gp, gq, c, s);
        rotate(v[p]!, v[q]!, c, s);
      }
    }
    if (!rotated) break;
  }
  const norms = g.map((column) => Math.sqrt(column.reduce((sum, x) => sum + x * x, 0)));
  const order = norms.map((_, j) => j).sort((x, y) => norms[y]! - norms[x]! || x - y);
  const us = new Float64Array(rows * t);
  const vOut = new Float64Array(cols * t);
  const s = new Float64Array(t);
  order.forEach((j, k) => {
    s[k] = norms[j]!;
    for (let i = 0; i < rows; i++) us[i * t + k] = g[j]![i]!;
    for (let i = 0; i < cols; i++) vOut[i * t + k] = v[j]![i]!;
  });
  return { us, s, v: vOut, t };
}

/** (x, y) <- (c x - s y, s x + c y), elementwise: one Jacobi rotation of two columns. */
function rotate(x: Float64Array, y: Float64Array, c: number, s: number): void {
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    const yi = y[i]!;
    x[i] = c * xi - s * yi;
    y[i] = s * xi + c * yi;
  }
}

export interface LowRankFactors {
  /** [m, k] row-major: U_k S_k (PEFT puts the singular values on B as well). */
  readonly b: Float64Array;
  /** [k, n] row-major: V_k^T. */
  readonly a: Float64Array;
  /** The singular values of B A, decreasing (at most min(m, n, R) of them). */
  readonly singularValues: Float64Array;
}

/**
 * The best rank-k approximation (Eckart-Young, Frobenius and spectral norm) of W = B A, as factors b [m, k],
 * a [k, n] with b a = U_k S_k V_k^T. When k exceeds W's rank the extra columns of b and rows of a are zero.
 */
export function truncatedSvdOfProduct(b: Float64Array, a: Float64Array, m: number, r: number, n: number, k: number): LowRankFactors {
  const qrB = householderQr(b, m, r);
  const at = new Float64Array(n * r);
  for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) at[j * r + i] = a[i * n + j]!;
  const qrA = householderQr(at, n, r);
  // M = R_B R_A^T: [pB, r] x [r, pA]
  const pB = qrB.p;
  const pA = qrA.p;
  const core = new Float64Array(pB * pA);
  for (let i = 0; i < pB; i++) {
    for (let j = 0; j < pA; j++) {
      let sum = 0;
      for (let l = 0; l < r; l++) sum += qrB.r[i]![l]! * qrA.r[j]![l]!;
      core[i * pA + j] = sum;
    }
  }
  const svd = jacobiSvd(core, pB, pA);
  const kept = Math.min(k, svd.t);
  // Column c of B is Q_B (U S)[:, c]; row c of A is (Q_A V[:, c])^T.
  const outB = new Float64Array(m * k);
  const outA = new Float64Array(k * n);
  for (let c = 0; c < kept; c++) {
    const columnB = applyQ(
      qrB,
      Float64Array.from({ length: pB }, (_, l) => svd.us[l * svd.t + c]!),
    );
    for (let i = 0; i < m; i++) outB[i * k + c] = columnB[i]!;
    outA.set(
      applyQ(
        qrA,
        Float64Array.from({ length: pA }, (_, l) => svd.v[l * svd.t + c]!),
      ),
      c * n,
    );
  }
  return { b: outB, a: outA, singularValues: svd.s };
}
