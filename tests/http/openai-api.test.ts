import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type OpenAI from "openai";
import { CHATML_TEMPLATE, skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";

const GOLDEN = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";

describe.skipIf(skipWithoutStories)("OpenAI API on stories260K, driven by the official openai client", () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer({ models: [`stories=${storiesModelPath}`], parallel: 4, chatTemplate: CHATML_TEMPLATE });
  });
  afterAll(async () => {
    await t?.server.close();
  });

  it("completes the golden TinyStories continuation greedily", async () => {
    const completion = await t.client.completions.create({
      model: "stories",
      prompt: "Once upon a time",
      temperature: 0,
      max_tokens: 40,
    });
    expect(completion.choices[0]!.text.startsWith(GOLDEN)).toBe(true);
    expect(completion.choices[0]!.finish_reason).toBe("length");
    expect(completion.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 40, total_tokens: 45 });
  });

  it("streams a completion whose chunks add up to the non-streamed text, with usage at the end", async () => {
    const stream = await t.client.completions.create({
      model: "stories",
      prompt: "Once upon a time",
      temperature: 0,
      max_tokens: 24,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(GOLDEN.startsWith(text.slice(0, 40))).toBe(true);
    expect(finish).toBe("length");
    expect(usage?.completion_tokens).toBe(24);
  });

  it("answers a chat completion with content and usage, streamed and not", async () => {
    const messages = [
      { role: "system" as const, content: "You tell stories." },
      { role: "user" as const, content: "Tell me about a cat." },
    ];
    const plain = await t.client.chat.completions.create({ model: "stories", messages, temperature: 0, max_tokens: 20 });
    expect(plain.object).toBe("chat.completion");
    expect(plain.choices[0]!.message.role).toBe("assistant");
    expect(plain.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(plain.usage!.completion_tokens).toBeGreaterThan(0);
    expect(plain.usage!.prompt_tokens).toBeGreaterThan(10);

    const stream = await t.client.chat.completions.create({ model: "stories", messages, temperature: 0, max_tokens: 20, stream: true });
    let streamed = "";
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      streamed += chunk.choices[0]?.delta.content ?? "";
    }
    expect(chunks).toBeGreaterThan(2);
    expect(streamed).toBe(plain.choices[0]!.message.content);
  });

  it("gives the same sampled output for the same seed, and stops at a stop string", async () => {
    const request = { model: "stories", prompt: "Once upon a time", temperature: 1, top_p: 0.9, max_tokens: 30, seed: 42 };
    const a = await t.client.completions.create(request);
    const b = await t.client.completions.create(request);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);

    const stopped = await t.client.completions.create({
      model: "stories",
      prompt: "Once upon a time",
      temperature: 0,
      max_tokens: 40,
      stop: ["Lily"],
    });
    expect(stopped.choices[0]!.text).toBe(", there was a little girl named ");
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
  });

  it("returns logprobs with top alternatives, the chosen token first under greedy decoding", async () => {
    const chat = await t.client.chat.completions.create({
      model: "stories",
      messages: [{ role: "user", content: "Once upon a time" }],
      temperature: 0,
      max_tokens: 5,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.length).toBe(5);
    for (const entry of content) {
      expect(entry.top_logprobs.length).toBe(3);
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs[0]!.token).toBe(entry.token);
    }
  });

  it("constrains output to a JSON schema; the result parses and validates", async () => {
    const chat = await t.client.chat.completions.create({
      model: "stories",
      messages: [{ role: "user", content: "Is the sky blue?" }],
      temperature: 0,
      max_tokens: 60,
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "answer",
          schema: {
            type: "object",
            properties: { answer: { type: "string", enum: ["yes", "no"] }, sure: { type: "boolean" } },
            required: ["answer", "sure"],
            additionalProperties: false,
          },
        },
      },
    });
    const parsed = JSON.parse(chat.choices[0]!.message.content!) as { answer: string; sure: boolean };
    expect(["yes", "no"]).toContain(parsed.answer);
    expect(typeof parsed.sure).toBe("boolean");
  });

  it("lists and retrieves models, 404 for an unknown one", async () => {
    const list = await t.client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(["stories"]);
    const one = await t.client.models.retrieve("stories");
    expect(one.id).toBe("stories");
    await expect(t.client.models.retrieve("nope")).rejects.toMatchObject({ status: 404, code: "model_not_found" });
    await expect(t.client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] })).rejects.toMatchObject({
      status: 404,
      code: "model_not_found",
      param: "model",
    });
  });

  it("answers 16 concurrent requests on 4 sequences, all complete", async () => {
    const requests = Array.from({ length: 16 }, (_, i) =>
      t.client.completions.create({ model: "stories", prompt: `Once upon a time ${i}`, temperature: 0, max_tokens: 16 }),
    );
    const results = await Promise.all(requests);
    for (const r of results) expect(r.usage!.completion_tokens).toBe(16);
  });

  it("frees the sequence when a streaming client disconnects", async () => {
    const controller = new AbortController();
    const stream = await t.client.completions.create(
      { model: "stories", prompt: "Once upon a time", max_tokens: 400, temperature: 0, ignore_eos: true, stream: true } as never,
      { signal: controller.signal },
    );
    let seen = 0;
    try {
      for await (const _ of stream as unknown as AsyncIterable<unknown>) {
        if (++seen === 3) controller.abort();
      }
    } catch {
      // The client reports the abort as an error or just ends the iteration; either is fine here.
    }
    expect(seen).toBe(3);
    const deadline = Date.now() + 5000;
    let busy = -1;
    while (Date.now() < deadline) {
      const ready = (await (await fetch(`${t.baseUrl}/ready`)).json()) as { models: Array<{ busy_sequences: number }> };
      busy = ready.models[0]!.busy_sequences;
      if (busy === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(busy).toBe(0);
  });
});
