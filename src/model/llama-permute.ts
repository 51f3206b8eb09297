// llama.cpp's llama graph applies RoPE to adjacent pairs (x[2j], x[2j+1]) of each head ("normal" rope),
// while HF's LlamaAttention rotates halves (x[j], x[j + d/2]) ("rotate_half", NeoX style).
// convert_hf_to_gguf.py reconciles them by permuting the output rows of q_proj (per n_head) and
// k_proj (per n_head_kv): within each head, row i*d/2 + j moves to 2j + i. Anything that produces
// those rows (the weights, a LoRA B, a bias) needs the same permutation; LoRA A (input side) does not.

/**
 * The row permutation convert_hf_to_gguf.py applies to q_proj (nHead) and k_proj (nHeadKv):
 * new row h*d + 2j + i = old row h*d + i*(d/2) + j, for head h, half i in {0, 1}, d = rows / nHead.
 * `matrix` is row-major [rows, cols]; returns a new array.
 */
export function permuteRowsForRope(matrix: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  return moveRows(matrix, rows, cols, nHead, "halves-to-interleaved");
}

/** The inverse of permuteRowsForRope (GGUF q/k rows back to HF order). */
export function unpermuteRowsForRope(matrix: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  return moveRows(matrix, rows, cols, nHead, "interleaved-to-halves");
}

/** Copies whole rows between the HF "halves" order and the GGUF "interleaved" order, head by head. */
function moveRows(
  matrix: Float32Array,
  rows: number,
  cols: number,
  nHead: number,
  direction: "halves-to-interleaved" | "interleaved-to-halves",
): Float32Array {
  if (matrix.length !== rows * cols) {
    throw new RangeError(`matrix has ${matrix.length} values, expected ${rows}x${cols}`);
  }
  if (!Number.isInteger(nHead) || nHead < 1 || rows % nHead !== 0 || (rows / nHead) % 2 !== 0) {
    throw new RangeError(`${rows} rows cannot be split into ${nHead} heads of even size`);
  }
  const headSize = rows / nHead;
  const halfSize = headSize / 2;
  const out = new Float32Array(matrix.length);
  for (let head = 0; head < nHead; head++) {
    const base = head * headSize;
    for (let half = 0; half < 2; half++) {
      for (let j = 0; j < halfSize; j++) {
        const halvesRow = base + half * halfSize + j;
        const interleavedRow = base + 2 * j + half;
        const [from, to] = direction === "halves-to-interleaved" ? [halvesRow, interleavedRow] : [interleavedRow, halvesRow];
        out.set(matrix.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
