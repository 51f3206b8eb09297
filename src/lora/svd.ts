/**
 * Truncated SVD of a low-rank product W = B A (B [m, R], A [R, n], row-major, float64), dependency-free, for
 * the `svd` merge. W is never formed: with thin QRs B = Q_B R_B and A^T = Q_A R_A, W = Q_B (R_B R_A^T) Q_A^T,
 * so W's singular values and vectors are those of the small core M = R_B R_A^T (at most R x R) mapped through
 * the orthonormal Q_B and Q_A. Householder QR and one-sided Jacobi (Hestenes) are both backward stable and need
 * no pivoting; rank-deficient inputs (a shared seeded A stacked n times, LoRI-S B with empty columns) are fine.
 *
 * Cost per module: QRs O((m + n) R^2), Jacobi O(R^3) per sweep (typically 6-10 sweeps), the result
 * O((m + n) R k). For R = 64 (four rank-16 adapters) on 4096 x 14336 that is ~1e8 flops, well under a second;
 * forming W and taking its SVD directly would cost O(m n min(m, n)) ~ 2.4e11.
 */

/** Thin Householder QR of X [rows, cols]: Q [rows, p] with orthonormal columns and R [p, cols], p = min. */
export function householderQr(x: Float64Array, rows: number, cols: number): { q: Float64Array; r: Float64Array; p: number } {
  const p = Math.min(rows, cols);
  const work = Float64Array.from(x);
  const vs: Float64Array[] = [];
  const betas: number[] = [];
  for (let k = 0; k < p; k++) {
    let norm = 0;
    for (let i = k; i < rows; i++) norm += work[i * cols + k]! ** 2;
    norm = Math.sqrt(norm);
    const v = new Float64Array(rows - k);
    if (norm === 0) {
      // A zero column: nothing to annihilate; the identity reflector (beta 0) keeps Q orthonormal.
      vs.push(v);
      betas.push(0);
      continue;
    }
    const x0 = work[k * cols + k]!;
    const alpha = x0 >= 0 ? -norm : norm;
    for (let i = k; i < rows; i++) v[i - k] = work[i * cols + k]!;
    v[0] = x0 - alpha;
    let vv = 0;
    for (let i = 0; i < v.length; i++) vv += v[i]! ** 2;
    const beta = vv === 0 ? 0 : 2 / vv;
    // work[k:, k:] -= beta v (v^T work[k:, k:])
    for (let j = k; j < cols; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i - k]! * work[i * cols + j]!;
      const f = beta * dot;
      if (f === 0) continue;
      for (let i = k; i < rows; i++) work[i * cols + j]! -= f * v[i - k]!;
    }
    vs.push(v);
    betas.push(beta);
  }
  const r = new Float64Array(p * cols);
  for (let i = 0; i < p; i++) for (let j = i; j < cols; j++) r[i * cols + j] = work[i * cols + j]!;
  // Q = H_0 H_1 ... H_{p-1} applied to the first p columns of the identity, last reflector first.
  const q = new Float64Array(rows * p);
  for (let i = 0; i < p; i++) q[i * p + i] = 1;
  for (let k = p - 1; k >= 0; k--) {
    const v = vs[k]!;
    const beta = betas[k]!;
    if (beta === 0) continue;
    for (let j = 0; j < p; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i - k]! * q[i * p + j]!;
      const f = beta * dot;
      if (f === 0) continue;
      for (let i = k; i < rows; i++) q[i * p + j]! -= f * v[i - k]!;
    }
  }
  return { q, r, p };
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
  const g = Float64Array.from(m); // columns are rotated until mutually orthogonal: G = M V = U S
  const v = new Float64Array(cols * cols);
  for (let j = 0; j < cols; j++) v[j * cols + j] = 1;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < cols - 1; p++) {
      for (let q = p + 1; q < cols; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < rows; i++) {
          const gp = g[i * cols + p]!;
          const gq = g[i * cols + q]!;
          alpha += gp * gp;
          beta += gq * gq;
          gamma += gp * gq;
        }
        if (gamma === 0 || Math.abs(gamma) <= JACOBI_TOLERANCE * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const tan = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + tan * tan);
        const s = c * tan;
        for (let i = 0; i < rows; i++) {
          const gp = g[i * cols + p]!;
          const gq = g[i * cols + q]!;
          g[i * cols + p] = c * gp - s * gq;
          g[i * cols + q] = s * gp + c * gq;
        }
        for (let i = 0; i < cols; i++) {
          const vp = v[i * cols + p]!;
          const vq = v[i * cols + q]!;
          v[i * cols + p] = c * vp - s * vq;
          v[i * cols + q] = s * vp + c * vq;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: cols }, (_, j) => {
    let n = 0;
    for (let i = 0; i < rows; i++) n += g[i * cols + j]! ** 2;
    return Math.sqrt(n);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y]! - norms[x]! || x - y);
  const us = new Float64Array(rows * t);
  const vOut = new Float64Array(cols * t);
  const s = new Float64Array(t);
  order.forEach((j, k) => {
    s[k] = norms[j]!;
    for (let i = 0; i < rows; i++) us[i * t + k] = g[i * cols + j]!;
    for (let i = 0; i < cols; i++) vOut[i * t + k] = v[i * cols + j]!;
  });
  return { us, s, v: vOut, t };
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
      for (let l = 0; l < r; l++) sum += qrB.r[i * r + l]! * qrA.r[j * r + l]!;
      core[i * pA + j] = sum;
    }
  }
  const svd = jacobiSvd(core, pB, pA);
  const kept = Math.min(k, svd.t);
  const outB = new Float64Array(m * k);
  const outA = new Float64Array(k * n);
  for (let c = 0; c < kept; c++) {
    for (let i = 0; i < m; i++) {
      let sum = 0;
      for (let l = 0; l < pB; l++) sum += qrB.q[i * pB + l]! * svd.us[l * svd.t + c]!;
      outB[i * k + c] = sum;
    }
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let l = 0; l < pA; l++) sum += qrA.q[j * pA + l]! * svd.v[l * svd.t + c]!;
      outA[c * n + j] = sum;
    }
  }
  return { b: outB, a: outA, singularValues: svd.s };
}
