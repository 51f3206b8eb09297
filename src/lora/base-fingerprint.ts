import { createHash } from "node:crypto";
import type { GgufFile } from "../gguf/gguf-types.js";
import { LoraError } from "./errors.js";

/**
 * Identifies the base model an adapter was trained for by architecture plus tensor names and shapes (never
 * dtypes: an F16 and a Q4_K GGUF of the same model share one fingerprint). Digest contract, shared with the
 * native trainer (docs/adapter-format.md): sha256 (lowercase hex) of the UTF-8 canonical JSON
 * `{"architecture":"<arch>","tensors":{"<name>":[d0,d1,...],...}}` with tensor names sorted by byte value, no
 * whitespace, shapes as written in the GGUF (ggml ne order, ne[0] first).
 */
export interface BaseFingerprint {
  readonly architecture: string;
  readonly tensors: Readonly<Record<string, readonly number[]>>;
  readonly sha256: string;
}

export function canonicalFingerprintJson(
  architecture: string,
  tensors: Iterable<{ readonly name: string; readonly shape: readonly number[] }>,
): string {
  const entries = [...tensors].map((t) => [t.name, [...t.shape]] as const);
  // Byte order == UTF-16 code unit order for ASCII names, which is all GGUF tensor names use.
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = entries.map(([name, shape]) => `${JSON.stringify(name)}:[${shape.join(",")}]`).join(",");
  return `{"architecture":${JSON.stringify(architecture)},"tensors":{${body}}}`;
}

export function computeBaseFingerprint(
  architecture: string,
  tensors: Iterable<{ readonly name: string; readonly shape: readonly number[] }>,
): BaseFingerprint {
  const json = canonicalFingerprintJson(architecture, tensors);
  const sorted = (JSON.parse(json) as { tensors: Record<string, number[]> }).tensors;
  return { architecture, tensors: sorted, sha256: createHash("sha256").update(json, "utf8").digest("hex") };
}

/** True when a stored fingerprint's digest matches its own names and shapes (detects hand-edited configs). */
export function fingerprintIsSelfConsistent(fp: BaseFingerprint): boolean {
  const tensors = Object.entries(fp.tensors).map(([name, shape]) => ({ name, shape }));
  return computeBaseFingerprint(fp.architecture, tensors).sha256 === fp.sha256;
}

/** The base architecture (`general.architecture`) of a GGUF header; throws when it is missing or not a string. */
export function ggufArchitecture(header: Pick<GgufFile, "metadata">): string {
  const value = header.metadata.get("general.architecture");
  if (value?.type !== "string" || typeof value.value !== "string" || value.value === "") {
    throw new LoraError("ADAPTER_UNSUPPORTED", "the base model has no string metadata 'general.architecture'");
  }
  return value.value;
}

/** The fingerprint of a base GGUF (its header: architecture + tensor names and shapes). Used by import and serving. */
export function baseFingerprintOfGguf(header: Pick<GgufFile, "metadata" | "tensors">): BaseFingerprint {
  return computeBaseFingerprint(ggufArchitecture(header), header.tensors);
}
