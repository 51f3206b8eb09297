import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { ensureTrainerBuilt } from "../native/helpers.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import type { TokenSequence } from "../../src/train/token-shards.js";

export { ensureTrainerBuilt };

/** One thread, CPU: the tests share two cores with other work. */
export const CPU_RUN = { gpu: "off", threads: 1, forwardSigint: false } as const;

export interface QaRecord {
  prompt: string;
  completion: string;
}

const NAMES = ["Tom", "Lily", "Ben", "Sue", "Max", "Anna", "Sam", "Mia", "Tim", "Zoe"];

/**
 * A templated question a 260K model can learn: five nouns with fixed colours, asked by ten different people.
 * The 10 held-out prompts are (name, noun) pairs never seen in training (every noun is seen with other names),
 * so answering them means reading the noun from the prompt and recalling its colour.
 */
export function colourTask(colours: Record<string, string> = { cat: "red", dog: "blue", ball: "green", sun: "yellow", hat: "pink" }): {
  train: QaRecord[];
  heldOut: QaRecord[];
} {
  const nouns = Object.keys(colours);
  const all = NAMES.flatMap((name, i) =>
    nouns.map((noun, j) => ({
      heldOut: j === i % nouns.length,
      record: { prompt: `Q: ${name} asks, what is the colour of the ${noun}?\nA:`, completion: ` The ${noun} is ${colours[noun]}.` },
    })),
  );
  return { train: all.filter((x) => !x.heldOut).map((x) => x.record), heldOut: all.filter((x) => x.heldOut).map((x) => x.record) };
}

/** Tokenized independently of src/train: BOS + tokenize(prompt), completion without the SentencePiece space, [EOS]. */
export function referenceSequence(model: LlamaModel, record: QaRecord, withEos: boolean): TokenSequence {
  const prompt = [model.tokens.bos!, ...model.tokenize(record.prompt, false)];
  const completion = [...model.tokenize(record.completion, false, "trimLeadingSpace"), ...(withEos ? [model.tokens.eos!] : [])];
  return { tokens: [...prompt, ...completion], supervised: [...prompt.map(() => false), ...completion.map(() => true)] };
}

export function toJsonl(records: readonly object[]): string {
  return `${records.map((r) => JSON.stringify(r)).join("\n")}\n`;
}

/** F32 bit pattern (so -0 and 0 differ). */
export function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

export interface TinyTrainWorkspace {
  model: string;
  data: string;
  adapters: string;
}

/** `dir/tiny.gguf` (a one-layer generated llama, fast to train), `dir/data.jsonl` with `records`, `dir/adapters`. */
export async function tinyTrainWorkspace(dir: string, records: readonly object[]): Promise<TinyTrainWorkspace> {
  const w = { model: join(dir, "tiny.gguf"), data: join(dir, "data.jsonl"), adapters: join(dir, "adapters") };
  await createTinyModel({ out: w.model, layers: 1, embd: 32, heads: 4, kvHeads: 2, ff: 48 });
  await writeFile(w.data, toJsonl(records));
  return w;
}
