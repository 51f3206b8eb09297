import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { runNativeTrainer, type NativeTrainerConfig, type TrainerEvent } from "../../src/train/native-trainer.js";
import { mulberry32 } from "../../src/util/mulberry32.js";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const trainerBinary = join(repoRoot, "native", "build", "lori-train");
/** stories260K (llama, F32, d=64, 5 layers, 8 heads, 4 kv heads, ff 172, vocab 512), shipped beside the repo. */
export const storiesPath = resolve(repoRoot, "../shared/fixtures/models/stories260K.gguf");
export const haveStories = existsSync(storiesPath);
export const storiesSkipMessage = `skipped: ${storiesPath} not found (the shared fixtures ship beside the repo)`;

/** Builds native/build/lori-train unless it is up to date (scripts/build-native.mjs is a no-op then). */
export function ensureTrainerBuilt(): void {
  execFileSync(process.execPath, [join(repoRoot, "scripts", "build-native.mjs"), "--quiet"], { stdio: "inherit" });
}

/** One-thread CPU settings: tests run on 2-core machines next to other work. */
export const cpu = { gpu: "off", threads: 1 } as const;

export async function run(config: NativeTrainerConfig): Promise<TrainerEvent[]> {
  return runNativeTrainer(config, { forwardSigint: false });
}

export function only<E extends TrainerEvent["event"]>(events: TrainerEvent[], kind: E): Extract<TrainerEvent, { event: E }>[] {
  return events.filter((e): e is Extract<TrainerEvent, { event: E }> => e.event === kind);
}

export function last<E extends TrainerEvent["event"]>(events: TrainerEvent[], kind: E): Extract<TrainerEvent, { event: E }> {
  const found = only(events, kind);
  if (found.length === 0) throw new Error(`no ${kind} event in ${JSON.stringify(events)}`);
  return found[found.length - 1]!;
}

export interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

/** Minimal safetensors reader for F32 files written by the trainer. */
export async function readSafetensors(path: string): Promise<{ metadata: Record<string, string>; tensors: Map<string, F32Tensor> }> {
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, unknown>;
  const tensors = new Map<string, F32Tensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = info as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (dtype !== "F32") throw new Error(`${name}: expected F32, got ${dtype}`);
    const start = 8 + headerLength + data_offsets[0];
    const copy = new Uint8Array(bytes.subarray(start, 8 + headerLength + data_offsets[1]));
    tensors.set(name, { shape, data: new Float32Array(copy.buffer) });
  }
  return { metadata, tensors };
}

/** Minimal safetensors writer (F32). */
export async function writeSafetensors(path: string, tensors: Map<string, F32Tensor>): Promise<void> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while (json.length % 8 !== 0) json += " ";
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, "utf8");
  let pos = 8 + json.length;
  for (const t of tensors.values()) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
    pos += t.data.byteLength;
  }
  await writeFile(path, out);
}

/** Deterministic pseudo-random numbers for test data, so failures reproduce. */
export const rng = mulberry32;

/** Shapes [out, in] of the seven projections of a llama model, by GGUF tensor stem. */
export function projectionShapes(d: number, kvOut: number, ff: number): Record<string, [number, number]> {
  return {
    attn_q: [d, d],
    attn_k: [kvOut, d],
    attn_v: [kvOut, d],
    attn_output: [d, d],
    ffn_gate: [ff, d],
    ffn_up: [ff, d],
    ffn_down: [d, ff],
  };
}

/** F32 bit pattern, so -0 and NaN payloads count as differences. */
export function bits(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0]!;
}
