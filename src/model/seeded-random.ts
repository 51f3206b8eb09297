/**
 * A small, fast, seeded PRNG (xoshiro128**, state mixed from seed and stream ids) so generated
 * models are byte-identical for the same seed on every platform and Node version (Math.random is not).
 */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `seed` and `stream` are uint32s; distinct (seed, stream) pairs give distinct sequences. */
  constructor(seed: number, stream = 0) {
    for (const [label, value] of [
      ["seed", seed],
      ["stream", stream],
    ] as const) {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
        throw new RangeError(`${label} must be an integer in [0, 2^32), got ${value}`);
      }
    }
    // mix32 is a bijection, so (s0, s1) already separates every (seed, stream) pair.
    this.s0 = mix32(seed);
    this.s1 = mix32(stream);
    this.s2 = mix32((seed + 0x9e3779b9) | 0);
    this.s3 = mix32((stream + 0x7f4a7c15) | 0);
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** Fills `target` with values uniform in [-bound, bound). */
  fillUniform(target: Float32Array, bound: number): Float32Array {
    for (let i = 0; i < target.length; i++) target[i] = (this.nextFloat() * 2 - 1) * bound;
    return target;
  }
}

/** The splitmix32 / murmur3 finalizer: an invertible 32-bit mix. */
function mix32(value: number): number {
  let z = value | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
