/**
 * Bit-packed masks over a row-major matrix (LoRI-S keeps only B entries whose bit is set). Bit i of the
 * flattened matrix lives in byte i >> 3 at bit position i & 7 (LSB first): the on-disk `lora_B.mask` layout.
 */

export function maskByteLength(elements: number): number {
  return Math.ceil(elements / 8);
}

/** Packs truthy entries (booleans or 0/1 numbers) into bits. */
export function packMask(values: ArrayLike<boolean | number>): Uint8Array {
  const out = new Uint8Array(maskByteLength(values.length));
  for (let i = 0; i < values.length; i++) if (values[i]) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

export function maskBit(mask: Uint8Array, index: number): boolean {
  return ((mask[index >> 3]! >> (index & 7)) & 1) === 1;
}

export function unpackMask(mask: Uint8Array, elements: number): Uint8Array {
  const out = new Uint8Array(elements);
  for (let i = 0; i < elements; i++) out[i] = (mask[i >> 3]! >> (i & 7)) & 1;
  return out;
}

export function maskPopcount(mask: Uint8Array, elements: number): number {
  let count = 0;
  for (let i = 0; i < elements; i++) count += (mask[i >> 3]! >> (i & 7)) & 1;
  return count;
}

/** A published LoRI-S adapter ships B densely; its mask is recoverable as B != 0. */
export function maskFromNonZero(values: Float32Array): Uint8Array {
  const out = new Uint8Array(maskByteLength(values.length));
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

/** Bits past `elements` in the last byte must be zero, so two encodings of one mask are byte-identical. */
export function hasCleanPadding(mask: Uint8Array, elements: number): boolean {
  if (mask.length !== maskByteLength(elements)) return false;
  const used = elements & 7;
  return used === 0 || mask[mask.length - 1]! >> used === 0;
}

/** Union of equally shaped masks. */
export function orMasks(masks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(masks[0]?.length ?? 0);
  for (const m of masks) for (let i = 0; i < out.length; i++) out[i]! |= m[i]!;
  return out;
}

/** Side-by-side concatenation of [rows, cols_i] masks into [rows, sum cols_i] (columns of a cat merge's B). */
export function concatMaskColumns(rows: number, parts: readonly { mask: Uint8Array; cols: number }[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.cols, 0);
  const out = new Uint8Array(maskByteLength(rows * total));
  for (let row = 0; row < rows; row++) {
    let col0 = 0;
    for (const { mask, cols } of parts) {
      for (let c = 0; c < cols; c++) {
        if (maskBit(mask, row * cols + c)) {
          const i = row * total + col0 + c;
          out[i >> 3]! |= 1 << (i & 7);
        }
      }
      col0 += cols;
    }
  }
  return out;
}
