/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; Random123), the
 * counter-based PRNG behind seeded LoRI A matrices. A native trainer implements the same function
 * independently, so this follows Random123's reference exactly and is checked against its known-answer vectors.
 *
 * Plain numbers, not BigInt: every word stays an unsigned 32-bit integer (`>>> 0`), and the 32x32->64 multiply
 * is split so that every intermediate is an exact float64 integer.
 */

// Module-private on purpose: V8 folds non-exported consts into the hot loop; exported ones live in cells and
// made seeded-A generation ~3x slower.
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const ROUNDS = 10;

/**
 * High 32 bits of a*b for unsigned 32-bit a, b, by 16-bit limbs: each partial product is < 2^32 and each sum
 * stays far below 2^53, so everything is exact; this form keeps V8 on integer paths (~3x faster than
 * splitting only b and dividing).
 */
export function mulhi32(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const lh = aLo * bHi;
  const hl = aHi * bLo;
  const carry = (((aLo * bLo) >>> 16) + (lh & 0xffff) + (hl & 0xffff)) >>> 16;
  return (aHi * bHi + (lh >>> 16) + (hl >>> 16) + carry) >>> 0;
}

/**
 * The first output word of Philox4x32-10 for counter (c0..c3) and key (k0, k1). Hot path of seeded A:
 * no allocation. Round: (hi0, lo0) = M0*c0, (hi1, lo1) = M1*c2, c = [hi1^c1^k0, lo1, hi0^c3^k1, lo0];
 * the key is bumped by (W0, W1) between rounds (9 bumps for 10 rounds).
 */
export function philox4x32First(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number): number {
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  return c0;
}

/** All four output words; for tests and tools (allocates). */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter;
  let [k0, k1] = key;
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}
