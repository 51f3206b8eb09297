import { writeFile } from "node:fs/promises";

/**
 * One training sequence: token ids and, per token, whether it is a prediction target (supervised).
 * The loss adds -log p(tokens[t] | tokens[0..t-1]) for every supervised t >= 1; prompt tokens are unsupervised.
 */
export interface TokenSequence {
  readonly tokens: readonly number[];
  readonly supervised: readonly boolean[];
}

/** File magic of the token-shard format read by the native trainer (native/token_shards.h). */
export const TOKEN_SHARDS_MAGIC = "LORITOK1";
export const TOKEN_SHARDS_VERSION = 1;

/**
 * Encodes sequences in the token-shard format (little-endian):
 * `"LORITOK1"` | u32 version (1) | u32 n_sequences, then per sequence
 * u32 n_tokens | n_tokens x u32 token | n_tokens x u8 supervised (0/1) | zero padding to a multiple of 4 bytes.
 */
export function encodeTokenShards(sequences: readonly TokenSequence[]): Uint8Array {
  let size = 16;
  for (const [i, seq] of sequences.entries()) {
    if (seq.tokens.length !== seq.supervised.length) {
      throw new RangeError(`sequence ${i}: ${seq.tokens.length} tokens but ${seq.supervised.length} supervised flags`);
    }
    size += 4 + align4(5 * seq.tokens.length);
  }
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(TOKEN_SHARDS_MAGIC), 0);
  view.setUint32(8, TOKEN_SHARDS_VERSION, true);
  view.setUint32(12, sequences.length, true);
  let offset = 16;
  for (const [i, seq] of sequences.entries()) {
    const n = seq.tokens.length;
    view.setUint32(offset, n, true);
    offset += 4;
    for (const token of seq.tokens) {
      if (!Number.isInteger(token) || token < 0 || token > 0xffffffff) throw new RangeError(`sequence ${i}: invalid token id ${token}`);
      view.setUint32(offset, token, true);
      offset += 4;
    }
    for (const flag of seq.supervised) bytes[offset++] = flag ? 1 : 0;
    offset = align4(offset);
  }
  return bytes;
}

/** Decodes a token-shard file (the inverse of {@link encodeTokenShards}). */
export function decodeTokenShards(bytes: Uint8Array): TokenSequence[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (bytes.byteLength < 16 || magic !== TOKEN_SHARDS_MAGIC) throw new Error("not a token-shard file (missing LORITOK1 magic)");
  const version = view.getUint32(8, true);
  if (version !== TOKEN_SHARDS_VERSION) throw new Error(`unsupported token-shard version ${version}`);
  const count = view.getUint32(12, true);
  const sequences: TokenSequence[] = [];
  let offset = 16;
  for (let s = 0; s < count; s++) {
    if (offset + 4 > bytes.byteLength) throw new Error(`token-shard file truncated in sequence ${s}`);
    const n = view.getUint32(offset, true);
    offset += 4;
    if (offset + 5 * n > bytes.byteLength) throw new Error(`token-shard file truncated in sequence ${s}`);
    const tokens: number[] = [];
    for (let t = 0; t < n; t++) tokens.push(view.getUint32(offset + 4 * t, true));
    offset += 4 * n;
    const supervised = Array.from(bytes.subarray(offset, offset + n), (b) => b !== 0);
    offset = align4(offset + n);
    sequences.push({ tokens, supervised });
  }
  if (offset !== bytes.byteLength) throw new Error("token-shard file has trailing bytes");
  return sequences;
}

/** Writes sequences to `path` in the token-shard format. */
export async function writeTokenShards(path: string, sequences: readonly TokenSequence[]): Promise<void> {
  await writeFile(path, encodeTokenShards(sequences));
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
