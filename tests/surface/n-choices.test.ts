import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { inProcessClient } from "./openai-client.js";

const PROMPT = "Q: Tom has 8 balls and buys 6 more. How many balls does Tom have?\nA:";
const MESSAGES = [{ role: "user" as const, content: "Hello!" }];

describe("n > 1 through the official client", () => {
  let core: ServerCore;
  let client: OpenAI;

  beforeAll(async () => {
    // 2 sequences per lane, 2 lanes: n = 3 needs both lanes, n = 5 is more than the model runs at once.
    core = await createInProcessServer({ parallel: 2, maxLanes: 2 }, { withDemoAdapters: false });
    client = inProcessClient(core);
  });
  afterAll(async () => {
    await core?.dispose();
  });

  const sample = { model: "lori-demo", prompt: PROMPT, max_tokens: 24, temperature: 1.2 };

  it("n: 3 with a seed gives three indexed choices, reproducibly; choice i is what seed + i gives alone", async () => {
    const first = await client.completions.create({ ...sample, n: 3, seed: 42 });
    const again = await client.completions.create({ ...sample, n: 3, seed: 42 });
    expect(first.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(again.choices.map((c) => c.text)).toEqual(first.choices.map((c) => c.text));
    expect(new Set(first.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    const alone = [];
    for (let i = 0; i < 3; i++) alone.push(await client.completions.create({ ...sample, seed: 42 + i }));
    expect(first.choices.map((c) => c.text)).toEqual(alone.map((a) => a.choices[0]!.text));
    // The prompt counts once; completions add up.
    expect(first.usage!.prompt_tokens).toBe(alone[0]!.usage!.prompt_tokens);
    expect(first.usage!.completion_tokens).toBe(alone.reduce((sum, a) => sum + a.usage!.completion_tokens, 0));
  });

  it("streams n: 3 chat choices interleaved by index, each adding up to its non-streamed text", async () => {
    const chat = { model: "lori-demo", messages: MESSAGES, max_tokens: 16, temperature: 1.2, n: 3, seed: 7 };
    const plain = await client.chat.completions.create(chat);
    expect(plain.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const stream = await client.chat.completions.create({ ...chat, stream: true, stream_options: { include_usage: true } });
    const texts = ["", "", ""];
    const order: number[] = [];
    const finished: Array<string | null> = [null, null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        order.push(choice.index);
        texts[choice.index] += choice.delta.content ?? "";
        if (choice.finish_reason) finished[choice.index] = choice.finish_reason;
      }
    }
    expect(texts).toEqual(plain.choices.map((c) => c.message.content));
    expect(finished.every((f) => f !== null)).toBe(true);
    // Interleaved: some later choice speaks before an earlier one is done.
    expect(order).not.toEqual([...order].sort((a, b) => a - b));
    expect(usage!.completion_tokens).toBe(plain.usage!.completion_tokens);
  });

  it("streams n: 2 completions with echo and logprobs, each choice its own text and offsets", async () => {
    const body = { ...sample, prompt: "A:", max_tokens: 8, n: 2, seed: 3, echo: true, logprobs: 1 };
    const plain = await client.completions.create(body);
    const stream = await client.completions.create({ ...body, stream: true });
    const texts = ["", ""];
    for await (const chunk of stream) for (const choice of chunk.choices) texts[choice.index] += choice.text;
    expect(texts).toEqual(plain.choices.map((c) => c.text));
    for (const choice of plain.choices) {
      expect(choice.text.startsWith("A:")).toBe(true);
      // Offsets run through each choice's own text.
      const offsets = choice.logprobs!.text_offset!;
      expect(offsets.at(-1)!).toBeLessThan(choice.text.length);
      // The demo model's BOS is scored too (a control token: it adds no text).
      expect(choice.logprobs!.tokens!.filter((t) => t !== "<|bos|>").join("")).toBe(choice.text);
    }
  });

  it("refuses n beyond what the model runs at once, naming the limit", async () => {
    const r = await postJson(core, "/v1/completions", { prompt: "a", n: 5 });
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe("n");
    expect(r.json.error.message).toContain("4");
    expect((await postJson(core, "/v1/completions", { prompt: "a", n: 0 })).status).toBe(400);
    // Nothing is left holding a sequence.
    expect(core.inFlight()).toBe(0);
  });
});
