import type { Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StopStringMatcher, TokenTextStream } from "../../src/engine/token-text-stream.js";
import { demoModelPath } from "../support/in-process.js";
import { getTestLlama } from "../support/test-llama.js";

/**
 * The reference, on the whole text at once: generation stops where the first stop string completes (the
 * smallest end offset; at equal ends the longest stop string, which starts first), and the text before it
 * is the output.
 */
function referenceStop(text: string, stops: readonly string[]): { output: string; matched: string | undefined } {
  let best: { at: number; end: number; stop: string } | undefined;
  for (const stop of stops) {
    if (stop.length === 0) continue;
    const at = text.indexOf(stop);
    if (at === -1) continue;
    const end = at + stop.length;
    if (!best || end < best.end || (end === best.end && at < best.at)) best = { at, end, stop };
  }
  return best ? { output: text.slice(0, best.at), matched: best.stop } : { output: text, matched: undefined };
}

/** What may still be held back after `text`: its longest suffix that is a proper prefix of a stop string. */
function referenceHeld(text: string, stops: readonly string[]): number {
  for (let length = Math.min(text.length, Math.max(0, ...stops.map((s) => s.length - 1))); length > 0; length--) {
    // Brute force: every stop, every length.
    if (stops.some((stop) => stop.length > length && stop.startsWith(text.slice(text.length - length)))) return length;
  }
  return 0;
}

/** Every way to cut `text` into non-empty pieces (2^(n-1) of them), as lists of cut offsets. */
function* everySplit(length: number): Generator<number[]> {
  for (let mask = 0; mask < 2 ** Math.max(0, length - 1); mask++) {
    const cuts: number[] = [];
    for (let i = 1; i < length; i++) if (mask & (1 << (i - 1))) cuts.push(i);
    yield cuts;
  }
}

/** Feeds the pieces; checks after each that only a possible stop-string start is held back; returns the run. */
function run(pieces: readonly string[], stops: readonly string[]) {
  const matcher = new StopStringMatcher(stops);
  let output = "";
  let seen = "";
  for (const piece of pieces) {
    seen += piece;
    output += matcher.push(piece);
    if (matcher.matched !== undefined) return { output, matched: matcher.matched };
    const held = seen.length - output.length;
    const allowed = referenceHeld(
      seen,
      stops.filter((s) => s.length > 0),
    );
    // One more code unit only to keep a surrogate pair together.
    expect(held === allowed || (held === allowed + 1 && /[\uD800-\uDBFF]$/.test(seen.slice(0, seen.length - allowed)))).toBe(true);
  }
  return { output: output + matcher.flush(), matched: undefined };
}

const cases: Array<{ text: string; stops: string[] }> = [
  { text: "hello world", stops: ["world"] },
  { text: "hello world", stops: ["xyz", "lo w"] },
  { text: "aaab aab", stops: ["aab"] },
  { text: "abcd efg", stops: ["abcd", "c"] },
  { text: "abcdcba", stops: ["bc", "abcd", "dcb"] },
  { text: "a\n\nb\n", stops: ["\n\n", "\n"] },
  { text: "no stop here", stops: ["stop!", "herex", "zz"] },
  { text: "<|im_end|>x", stops: ["<|im_end|>", "<|im"] },
  { text: "tail <|im", stops: ["<|im_end|>"] },
  { text: "x😀y😀", stops: ["😀y"] },
  { text: "é😀é", stops: ["😀é", "ü"] },
  { text: "ab😀", stops: ["b😀x"] },
  { text: "abc", stops: ["", "c"] },
  { text: "abcabc", stops: [] },
];

describe("StopStringMatcher against the whole-text reference", () => {
  for (const { text, stops } of cases) {
    it(`${JSON.stringify(text)} with ${JSON.stringify(stops)}, split every way`, () => {
      const expected = referenceStop(text, stops);
      let splits = 0;
      for (const cuts of everySplit(text.length)) {
        const pieces = [0, ...cuts].map((from, i) => text.slice(from, [...cuts, text.length][i]));
        const got = run(pieces, stops);
        expect(got, JSON.stringify(pieces)).toEqual(expected);
        splits++;
      }
      expect(splits).toBe(2 ** (text.length - 1));
    });
  }

  it("releases text that cannot start a stop string at once", () => {
    const matcher = new StopStringMatcher(["###"]);
    expect(matcher.push("abc")).toBe("abc");
    expect(matcher.push("d#")).toBe("d");
    expect(matcher.push("#x")).toBe("##x");
    expect(matcher.push("##")).toBe("");
    expect(matcher.push("#")).toBe("");
    expect(matcher.matched).toBe("###");
  });
});

describe("TokenTextStream + StopStringMatcher on the demo model's byte tokens", () => {
  let model: Awaited<ReturnType<Awaited<ReturnType<typeof getTestLlama>>["loadModel"]>>;
  beforeAll(async () => {
    model = await (await getTestLlama()).loadModel({ modelPath: demoModelPath });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  // Multi-byte characters come out of this tokenizer one byte per token, so every character of 2, 3 and 4
  // bytes is split across tokens, and stop strings start and end inside them.
  const texts = ["Héllo wörld ### end", "naïve café — ünïcode", "emoji 😀 then 😀😀 done", "日本語のテキスト。"];
  const stopSets = [[], ["###"], ["wörld"], ["😀 d", "😀😀"], ["é —", "ü"], ["語の", "。"], ["ö", "😀", "テ"]];

  it("streams exactly the reference text, held back and stopped at the same place", () => {
    let checked = 0;
    for (const text of texts) {
      const context = model.tokenize("Once upon a time", false);
      const tokens = model.tokenize(text, false) as Token[];
      // Bytes, not characters: the multi-byte characters really are split across tokens.
      expect(tokens.length).toBeGreaterThan(text.length);
      for (const stops of stopSets) {
        const stream = new TokenTextStream(model, context);
        const matcher = new StopStringMatcher(stops);
        let output = "";
        for (const token of tokens) {
          output += matcher.push(stream.push(token));
          if (matcher.matched !== undefined) break;
        }
        if (matcher.matched === undefined) output += matcher.flush();
        const reference = referenceStop(model.detokenize(tokens, false, context), stops);
        expect({ output, matched: matcher.matched }, `${text} / ${JSON.stringify(stops)}`).toEqual(reference);
        checked++;
      }
    }
    expect(checked).toBe(texts.length * stopSets.length);
  });
});
