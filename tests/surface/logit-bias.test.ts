import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { byteToken, inProcessClient } from "./openai-client.js";

const PROMPT = "Q: Tom has 8 balls and buys 6 more. How many balls does Tom have?\nA:";

describe("logit_bias through the official client", () => {
  let core: ServerCore;
  let client: OpenAI;

  beforeAll(async () => {
    core = await createInProcessServer({}, { withDemoAdapters: false });
    client = inProcessClient(core);
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("never samples a token banned with -100, at any seed", async () => {
    const space = byteToken(" ");
    // Without the bias the space is the most common token in the demo model's text: it must show up.
    for (const seed of [1, 2, 3, 4]) {
      const free = await client.completions.create({
        model: "lori-demo",
        prompt: PROMPT,
        max_tokens: 48,
        temperature: 1.5,
        seed,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(free.choices[0]!.text).toContain(" ");
    }
    for (const seed of [1, 2, 3, 4]) {
      const banned = await client.completions.create({
        model: "lori-demo",
        prompt: PROMPT,
        max_tokens: 48,
        temperature: 1.5,
        seed,
        logit_bias: { [String(space)]: -100 },
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(banned.usage!.completion_tokens).toBe(48);
      expect(banned.choices[0]!.text).not.toContain(" ");
    }
    const chat = await client.chat.completions.create({
      model: "lori-demo",
      messages: [{ role: "user", content: "Hello!" }],
      max_tokens: 32,
      temperature: 0,
      logit_bias: { [String(space)]: -100 },
    });
    expect(chat.choices[0]!.message.content).not.toContain(" ");
  });

  it("a +100 bias makes greedy decoding pick that token every time", async () => {
    const z = byteToken("Z");
    const completion = await client.completions.create({
      model: "lori-demo",
      prompt: PROMPT,
      max_tokens: 8,
      temperature: 0,
      logit_bias: { [String(z)]: 100 },
    });
    expect(completion.choices[0]!.text).toBe("ZZZZZZZZ");
  });

  it("refuses token ids outside the vocabulary and biases outside -100..100", async () => {
    const outside = await postJson(core, "/v1/completions", { prompt: "a", logit_bias: { "100000": -100 } });
    expect(outside.status).toBe(400);
    expect(outside.json.error.param).toBe("logit_bias");
    expect(outside.json.error.message).toContain("100000");
    const tooBig = await postJson(core, "/v1/completions", { prompt: "a", logit_bias: { "65": 101 } });
    expect(tooBig.status).toBe(400);
    const notId = await postJson(core, "/v1/chat/completions", { messages: [{ role: "user", content: "a" }], logit_bias: { a: 1 } });
    expect(notId.status).toBe(400);
  });
});
