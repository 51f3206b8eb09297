import { randomBytes } from "node:crypto";
import { LoraError } from "./errors.js";
import { philox4x32First } from "./philox.js";
import { MODULE_ID, type TargetModule } from "./target-modules.js";

/**
 * Seeded LoRI A matrices: A is never stored, it is regenerated from (seed, layer, module, row, col). The exact
 * recipe is the on-disk contract shared with the native trainer (docs/adapter-format.md, "Seeded A"):
 *
 *   key     = [seed mod 2^32, floor(seed / 2^32)]
 *   counter = [col, row, moduleId, layer]
 *   x       = first output word of Philox4x32-10(counter, key)
 *   u       = (x >>> 8) * 2^-24                               in [0, 1), exactly representable
 *   A[row, col] = float32((2u - 1) * (1 / sqrt(inFeatures)))  product in float64, rounded to float32 once
 *
 * so A ~ U[-1/sqrt(in), 1/sqrt(in)), PEFT's kaiming_uniform(a = sqrt(5)) bound for lora_A.
 */

export interface SeededAParams {
  /** Integer in [0, 2^53 - 1], JSON-safe. */
  readonly seed: number;
  readonly layer: number;
  readonly module: TargetModule;
  readonly rank: number;
  readonly inFeatures: number;
}

const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_MINUS_24 = 2 ** -24;

export function assertValidSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new LoraError("ADAPTER_BAD_CONFIG", `seed must be an integer in [0, 2^53 - 1], got ${seed}`);
  }
}

function assertUint32(name: string, value: number, min = 0): void {
  if (!Number.isInteger(value) || value < min || value >= TWO_POW_32) {
    throw new LoraError("ADAPTER_BAD_CONFIG", `${name} must be an integer in [${min}, 2^32), got ${value}`);
  }
}

/** One element, for spot checks and tests; `generateSeededA` is the fast path for whole matrices. */
export function seededAElement(seed: number, layer: number, module: TargetModule, row: number, col: number, inFeatures: number): number {
  const x = philox4x32First(col, row, MODULE_ID[module], layer, seed % TWO_POW_32, Math.floor(seed / TWO_POW_32));
  const u = (x >>> 8) * TWO_POW_MINUS_24;
  return Math.fround((2 * u - 1) * (1 / Math.sqrt(inFeatures)));
}

/** A in PEFT layout [rank, inFeatures], row-major (row = rank index). */
export function generateSeededA(params: SeededAParams): Float32Array {
  const { seed, layer, module, rank, inFeatures } = params;
  assertValidSeed(seed);
  assertUint32("layer", layer);
  assertUint32("rank", rank, 1);
  assertUint32("inFeatures", inFeatures, 1);
  const k0 = seed % TWO_POW_32;
  const k1 = Math.floor(seed / TWO_POW_32);
  const moduleId = MODULE_ID[module];
  // Computed once, in float64, exactly as the spec says: 1 / sqrt(in), not a float32 rsqrt.
  const bound = 1 / Math.sqrt(inFeatures);
  const out = new Float32Array(rank * inFeatures);
  for (let row = 0; row < rank; row++) {
    const base = row * inFeatures;
    for (let col = 0; col < inFeatures; col++) {
      const u = (philox4x32First(col, row, moduleId, layer, k0, k1) >>> 8) * TWO_POW_MINUS_24;
      // Storing into a Float32Array rounds the float64 product to float32 once (same as Math.fround).
      out[base + col] = (2 * u - 1) * bound;
    }
  }
  return out;
}

/** A fresh uniformly random seed in [0, 2^53 - 1] from the OS CSPRNG. */
export function newRandomSeed(): number {
  const bytes = randomBytes(8);
  const high21 = bytes.readUInt32LE(4) & 0x1f_ffff;
  return high21 * TWO_POW_32 + bytes.readUInt32LE(0);
}
