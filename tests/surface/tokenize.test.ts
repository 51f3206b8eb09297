import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { inProcessClient } from "./openai-client.js";

// The demo model's tokenizer has one token per byte (id = byte value) plus <|bos|> 256, <|eos|> 257,
// <|im_start|> 258 and <|im_end|> 259: expected ids below follow from that, not from the server.
type Tokenized = { tokens: Array<number | { id: number; piece: string | number[] }> };

describe("/tokenize and /detokenize (llama.cpp server shapes) through the official client", () => {
  let core: ServerCore;
  let client: OpenAI;

  beforeAll(async () => {
    core = await createInProcessServer({}, { withDemoAdapters: false });
    client = inProcessClient(core, "");
  });
  afterAll(async () => {
    await core?.dispose();
  });

  const tokenize = (body: Record<string, unknown>) => client.post<Tokenized>("/tokenize", { body });
  const detokenize = (tokens: number[]) => client.post<{ content: string }>("/detokenize", { body: { tokens } });

  it("tokenizes to the byte ids and round-trips any text", async () => {
    expect(await tokenize({ content: "Hi!" })).toEqual({ tokens: [72, 105, 33] });
    for (const text of ["Q: Tom has 8 balls.\nA: 14", "héllo wörld 😀", " leading and trailing  ", ""]) {
      const { tokens } = await tokenize({ content: text });
      expect(tokens.every((t) => typeof t === "number")).toBe(true);
      expect((await detokenize(tokens as number[])).content).toBe(text);
    }
  });

  it("reads special-token text as the token unless parse_special is false, and adds BOS with add_special", async () => {
    const chat = "<|im_start|>user\nHi<|im_end|>";
    const parsed = (await tokenize({ content: chat })).tokens as number[];
    expect(parsed).toEqual([258, ..."user\nHi".split("").map((c) => c.charCodeAt(0)), 259]);
    expect((await detokenize(parsed)).content).toBe(chat);
    const literal = (await tokenize({ content: chat, parse_special: false })).tokens as number[];
    expect(literal).toEqual([...Buffer.from(chat, "utf8")]);
    expect((await detokenize(literal)).content).toBe(chat);
    const withBos = (await tokenize({ content: "Hi", add_special: true })).tokens as number[];
    expect(withBos).toEqual([256, 72, 105]);
  });

  it("returns pieces: text when valid UTF-8 alone, else the bytes", async () => {
    const { tokens } = await tokenize({ content: "aé", with_pieces: true });
    expect(tokens).toEqual([
      { id: 97, piece: "a" },
      { id: 0xc3, piece: [0xc3] },
      { id: 0xa9, piece: [0xa9] },
    ]);
  });

  it("refuses bad input with the OpenAI error envelope", async () => {
    const outside = await postJson(core, "/detokenize", { tokens: [1, 99999] });
    expect(outside.status).toBe(400);
    expect(outside.json.error.param).toBe("tokens");
    expect((await postJson(core, "/tokenize", { text: "no content field" })).status).toBe(400);
    expect((await postJson(core, "/tokenize", { content: "a", model: "nope" })).status).toBe(404);
  });
});
