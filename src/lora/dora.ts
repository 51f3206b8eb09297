import { permuteRowsForRope } from "../model/llama-permute.js";
import type { Adapter, LoraModule } from "./adapter.js";
import { LoraError } from "./errors.js";

/**
 * DoRA (weight-decomposed low-rank adaptation): a module's adapted weight is
 *   W' = m * (W + s B A) / ||W + s B A||   (per output row: the norm runs over the input dimension)
 * with m the module's magnitude vector (PEFT's lora_magnitude_vector, one value per output feature; PEFT's
 * get_weight_norm takes the norm of W [out, in] over dim=1). That is not W + (a low-rank delta), so llama.cpp's
 * LoRA path (W x + s B (A x)) cannot express it: a DoRA adapter is served and exported only as a merged model
 * (`export NAME --format merged-gguf --base M`, merged-model.ts, which calls rescaleDoraRow per row).
 */

export function isDoraAdapter(adapter: Adapter): boolean {
  return adapter.modules.some((m) => m.magnitude !== undefined);
}

/** The one refusal wherever a DoRA adapter would be compiled to (or combined as) a GGUF LoRA. */
export function doraIsNotALoraError(name: string | undefined): LoraError {
  const ref = name ?? "NAME";
  return new LoraError(
    "ADAPTER_UNSUPPORTED",
    `${name === undefined ? "this is a" : `'${name}' is a`} DoRA adapter: it cannot be served or combined as a LoRA ` +
      `(DoRA rescales every output row of the weight); export it as a merged model: ` +
      `lori-server export ${ref} --format merged-gguf --base MODEL.gguf --out MERGED.gguf`,
  );
}

/** DoRA's magnitudes in the base GGUF's row order (q/k rows permuted like B's where the converter did), or undefined. */
export function doraMagnitudeInGgufRows(m: LoraModule, ropeHeads: number | null): Float32Array | undefined {
  if (!m.magnitude) return undefined;
  return ropeHeads === null ? m.magnitude : permuteRowsForRope(m.magnitude, m.outFeatures, 1, ropeHeads);
}

/** Rescales one row of W + s B A (float64, in place) to DoRA's m * row / ||row||. */
export function rescaleDoraRow(row: Float64Array, magnitude: number): void {
  let sum = 0;
  for (const x of row) sum += x * x;
  const norm = Math.sqrt(sum);
  if (!(norm > 0)) throw new LoraError("ADAPTER_BAD_TENSORS", "a DoRA-adapted weight row is all zeros: its direction is undefined");
  const factor = magnitude / norm;
  for (let i = 0; i < row.length; i++) row[i] = row[i]! * factor;
}
