import type { LlamaContextOptions, LlamaContextSequence, Token } from "node-llama-cpp";
import { logSoftmax } from "./reference-llama.js";

/**
 * Context options for float32-exact comparisons (measured: ~1e-6 max abs vs a float64 reference).
 * llama.cpp's defaults cost ~1e-3: an F16 KV cache rounds K and V, and flash attention (on by default,
 * "auto") computes in F16 and silently ignores an F32 KV cache type. Both must be overridden.
 */
export const EXACT_CONTEXT_OPTIONS = {
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
  threads: 1,
} as const satisfies LlamaContextOptions;

/**
 * Full-vocabulary log-probabilities (log-softmax of the logits) that the model assigns to the token after
 * `tokens`, evaluated from an empty sequence (positions 0..n-1).
 *
 * Why not raw logits: node-llama-cpp 3.21.1 exposes no logits getter. `controlledEvaluate` with
 * `generateNext.probabilities` returns softmax(logits) over every candidate the sampler kept; with the
 * default greedy sampler (temperature 0, no top-k/penalties) that is the whole vocabulary, unscaled.
 * log-softmax equals logits minus a per-position constant, so it compares exactly like logits would
 * (compare against `logSoftmax(referenceLogits)`). float32 probabilities keep ~1e-7 relative precision,
 * i.e. ~1e-7 absolute in log space for any token with probability above ~1e-30.
 */
export async function getLastPositionLogProbs(sequence: LlamaContextSequence, tokens: readonly Token[]): Promise<Float64Array> {
  if (tokens.length === 0) throw new Error("need at least one token");
  await sequence.clearHistory();
  const last = tokens[tokens.length - 1]!;
  const results = await sequence.controlledEvaluate([...tokens.slice(0, -1), [last, { generateNext: { probabilities: true } }]]);
  const probabilities = results[tokens.length - 1]?.next?.probabilities;
  if (!probabilities) throw new Error("node-llama-cpp returned no probabilities for the last position");

  const logProbs = new Float64Array(probabilities.size);
  for (let token = 0; token < logProbs.length; token++) {
    const probability = probabilities.get(token as Token);
    // A gap means the sampler dropped candidates (top-k, grammar...): the vector would be meaningless.
    if (probability === undefined) throw new Error(`no probability for token ${token}: candidates were filtered`);
    logProbs[token] = Math.log(probability);
  }
  return logProbs;
}

/** Largest absolute element-wise difference. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/**
 * The trainer-parity check: node-llama-cpp's log-probs on `sequence` (a context over the trained model, or the
 * base with the exported adapter) against the trainer's own logits, at the chosen positions of each training
 * sequence. The trainer dumps logits as float32 [sequence][position][vocab], once for the trained weights and
 * once for the base. Returns the largest difference (`worst`) and how far training moved the trainer's
 * log-probs from the base's (`effect`), so a test can show the comparison is not of two untouched models.
 */
export async function trainerParity(
  sequence: LlamaContextSequence,
  sequences: readonly { readonly tokens: readonly number[] }[],
  logits: { readonly trained: Float32Array; readonly base: Float32Array },
  vocab: number,
  positions: (length: number) => readonly number[],
): Promise<{ worst: number; effect: number }> {
  let worst = 0;
  let effect = 0;
  for (const [s, seq] of sequences.entries()) {
    for (const t of positions(seq.tokens.length)) {
      const offset = (s * seq.tokens.length + t) * vocab;
      const trainer = logSoftmax(logits.trained.subarray(offset, offset + vocab));
      const llamaCpp = await getLastPositionLogProbs(sequence, seq.tokens.slice(0, t + 1) as Token[]);
      worst = Math.max(worst, maxAbsDifference(trainer, llamaCpp));
      effect = Math.max(effect, maxAbsDifference(trainer, logSoftmax(logits.base.subarray(offset, offset + vocab))));
    }
  }
  return { worst, effect };
}
