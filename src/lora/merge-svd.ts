import { materializeA, type LoraModule } from "./adapter.js";
import type { Part } from "./merge.js";
import { MergeParameterError } from "./merge-options.js";
import { truncatedSvdOfProduct } from "./svd.js";

/**
 * PEFT's `svd` merge: per module, delta W = sum_i c_i B_i A_i (c_i = w_i * alpha_i / r_i, any sign, any ranks,
 * modules present in only some inputs merge those that have them), truncated to its best rank-k approximation
 * U_k S_k V_k^T, written as B = U_k S_k, A = V_k^T with alpha = k (scale 1). A dense, no mask: a plain LoRA.
 *
 * One deliberate difference from PEFT (checked against 0.20): PEFT weights each get_delta_weight(), which
 * already includes alpha_i / r_i, by w_i * alpha_i / r_i again, i.e. it sums w_i s_i^2 B_i A_i. We sum
 * w_i s_i B_i A_i, the same delta W every other method (and serving the adapters) uses; the two agree exactly
 * when every input has alpha = r.
 *
 * delta W is never formed: it is the product of the cat merge's factors [B_1 | ... | B_n] [c_1 A_1; ...], and
 * svd.ts takes the truncated SVD of that product through two thin QRs (cost in svd.ts).
 */
export function svdMergeModule(parts: readonly Part[], rank: number): LoraModule {
  const base = parts[0]!.module;
  const { inFeatures, outFeatures } = base;
  if (rank > Math.min(inFeatures, outFeatures)) {
    throw new MergeParameterError(
      "rank",
      `rank ${rank} exceeds layer ${base.layer} ${base.module}'s smaller dimension (${outFeatures}x${inFeatures})`,
    );
  }
  const total = parts.reduce((n, p) => n + p.module.rank, 0);
  const stackedB = new Float64Array(outFeatures * total);
  const stackedA = new Float64Array(total * inFeatures);
  let col0 = 0;
  for (const { module: m, c } of parts) {
    const a = materializeA(m);
    for (let i = 0; i < a.length; i++) stackedA[col0 * inFeatures + i] = c * a[i]!;
    for (let row = 0; row < outFeatures; row++) {
      for (let k = 0; k < m.rank; k++) stackedB[row * total + col0 + k] = m.b[row * m.rank + k]!;
    }
    col0 += m.rank;
  }
  const factors = truncatedSvdOfProduct(stackedB, stackedA, outFeatures, total, inFeatures, rank);
  return {
    layer: base.layer,
    module: base.module,
    rank,
    alpha: rank,
    inFeatures,
    outFeatures,
    a: { kind: "dense", data: Float32Array.from(factors.a) },
    b: Float32Array.from(factors.b),
  };
}
