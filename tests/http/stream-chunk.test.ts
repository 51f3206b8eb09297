import { describe, expect, it } from "vitest";
import { chunkWriter } from "../../src/routes/stream-chunk.js";

describe("chunkWriter", () => {
  // The reference is JSON.stringify of the chunk object the routes build for every other chunk.
  const texts = ["", "plain", 'quote " and \\ backslash', "line\nbreak\ttab", "é😀日本", "\u0000\u001f", "\ud800 lone"];
  for (const includeUsage of [false, true]) {
    it(`writes what JSON.stringify writes for the same chunk (usage ${includeUsage ? "null" : "absent"})`, () => {
      const envelope = { id: 'cmpl-"x"', object: "text_completion", created: 1796199956, model: "demo/ä" };
      const write = chunkWriter(envelope, includeUsage);
      for (const text of texts) {
        for (const logprobs of [null, { tokens: [text], token_logprobs: [-0.5], top_logprobs: [{ [text]: -0.5 }], text_offset: [3] }]) {
          const choice = { index: 2, text, logprobs, finish_reason: null };
          const expected = JSON.stringify({ ...envelope, choices: [choice], ...(includeUsage ? { usage: null } : {}) });
          expect(write(JSON.stringify(choice)).json).toBe(expected);
          expect(JSON.parse(write(JSON.stringify(choice)).json)).toEqual(JSON.parse(expected));
        }
      }
    });
  }
});
