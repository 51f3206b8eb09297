import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";

/** The same surface over a real socket: SSE framing, base64 bodies and the root routes as a client sees them. */
describe("the OpenAI surface on a listening server", () => {
  let t: TestServer;

  beforeAll(async () => {
    const adaptersDir = mkdtempSync(join(tmpdir(), "lori-surface-adapters-"));
    cpSync(join(demoAdaptersDir, "math"), join(adaptersDir, "math"), { recursive: true });
    t = await startTestServer({ models: [`lori-demo=${demoModelPath}`], adaptersDir, contextSize: 2048, parallel: 2, maxLanes: 2 });
  });
  afterAll(async () => {
    await t?.server.close();
  });

  it("streams n: 3 chat choices and a forced tool call", async () => {
    const stream = await t.client.chat.completions.create({
      model: "lori-demo",
      messages: [{ role: "user", content: "Hello!" }],
      max_tokens: 8,
      temperature: 1,
      seed: 11,
      n: 3,
      stream: true,
    });
    const seen = new Set<number>();
    for await (const chunk of stream) for (const choice of chunk.choices) seen.add(choice.index);
    expect([...seen].sort()).toEqual([0, 1, 2]);

    const tools = t.client.chat.completions.stream({
      model: "lori-demo",
      messages: [{ role: "user", content: "Add 2 and 3." }],
      tools: [
        {
          type: "function",
          function: { name: "add", parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } } } },
        },
      ],
      tool_choice: { type: "function", function: { name: "add" } },
      max_tokens: 64,
      temperature: 0,
    });
    const final = await tools.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(Object.keys(JSON.parse(call.function.arguments) as object).sort()).toEqual(["a", "b"]);
  });

  it("answers embeddings (base64 by the client's default) and tokenize round trips", async () => {
    const base = await t.client.embeddings.create({ model: "lori-demo", input: ["Hello!", "A:"] });
    const math = await t.client.embeddings.create({ model: "math", input: ["Hello!", "A:"] });
    expect(base.data).toHaveLength(2);
    expect(base.data[0]!.embedding.length).toBe(math.data[0]!.embedding.length);
    expect(base.data[0]!.embedding).not.toEqual(math.data[0]!.embedding);
    const tokens = await fetch(`${t.baseUrl}/tokenize`, { method: "POST", body: JSON.stringify({ content: "héllo" }) });
    const { tokens: ids } = (await tokens.json()) as { tokens: number[] };
    const back = await fetch(`${t.baseUrl}/detokenize`, { method: "POST", body: JSON.stringify({ tokens: ids }) });
    expect(await back.json()).toEqual({ content: "héllo" });
  });
});
