import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { CHATML_TEMPLATE } from "../support/server-harness.js";
import { inProcessClient } from "./openai-client.js";

type ObjectSchema = {
  type: "object";
  properties: Record<string, { type: string; enum?: string[] }>;
  required: string[];
  additionalProperties: false;
};

const WEATHER: ObjectSchema = {
  type: "object",
  properties: {
    city: { type: "string", enum: ["Paris", "London", "Tokyo"] },
    days: { type: "integer" },
    metric: { type: "boolean" },
  },
  required: ["city", "days", "metric"],
  additionalProperties: false,
};
const ADD: ObjectSchema = {
  type: "object",
  properties: { a: { type: "number" }, b: { type: "number" } },
  required: ["a", "b"],
  additionalProperties: false,
};

/** A straightforward check of the schemas above: exactly the listed keys, each of its type (and enum). */
function expectMatchesSchema(json: string, schema: ObjectSchema) {
  const value = JSON.parse(json) as Record<string, unknown>;
  expect(Object.keys(value).sort()).toEqual([...schema.required].sort());
  for (const [key, spec] of Object.entries(schema.properties)) {
    const v = value[key];
    if (spec.type === "integer") expect(Number.isInteger(v)).toBe(true);
    else if (spec.type === "number") expect(Number.isFinite(v)).toBe(true);
    else expect(typeof v).toBe(spec.type);
    if (spec.enum) expect(spec.enum).toContain(v);
  }
}

const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris for the next 3 days?" }];
const TOOLS: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather forecast for a city", parameters: WEATHER } },
  { type: "function", function: { name: "add", description: "Adds two numbers", parameters: ADD } },
];
const FORCED = { type: "function" as const, function: { name: "get_weather" } };

describe("tools and tool_choice through the official client", () => {
  let core: ServerCore;
  let client: OpenAI;

  beforeAll(async () => {
    // The function documentation in the system message is ~1 KB of byte tokens.
    core = await createInProcessServer({ contextSize: 2048 }, { withDemoAdapters: false });
    client = inProcessClient(core);
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("runTools with a named function: the call's arguments follow the schema, and the result goes back", async () => {
    const received: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model: "lori-demo",
      messages: MESSAGES,
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            description: "Weather forecast for a city",
            parameters: WEATHER,
            parse: JSON.parse,
            function: (args: unknown) => {
              received.push(args);
              return { forecast: "sunny" };
            },
          },
        },
      ],
      tool_choice: FORCED,
      temperature: 0,
      max_tokens: 256,
    });
    const completion = await runner.finalChatCompletion();
    expect(received).toHaveLength(1);
    const call = completion.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
    expect(call.function.name).toBe("get_weather");
    expect(call.id).toMatch(/^call-/);
    expectMatchesSchema(call.function.arguments, WEATHER);
    expect(received[0]).toEqual(JSON.parse(call.function.arguments));

    // The conversation with the call and its result continues (tool_choice none: a plain answer).
    const followUp = await client.chat.completions.create({
      model: "lori-demo",
      messages: runner.messages as OpenAI.ChatCompletionMessageParam[],
      tools: TOOLS,
      tool_choice: "none",
      temperature: 0,
      max_tokens: 16,
    });
    expect(followUp.choices[0]!.message.tool_calls).toBeUndefined();
    expect(typeof followUp.choices[0]!.message.content).toBe("string");
  });

  it("a forced call is valid JSON for its schema whatever the sampling, and tool_choice required picks an offered one", async () => {
    for (const seed of [1, 2, 3]) {
      const forced = await client.chat.completions.create({
        model: "lori-demo",
        messages: MESSAGES,
        tools: TOOLS,
        tool_choice: { type: "function", function: { name: "add" } },
        temperature: 1.3,
        seed,
        max_tokens: 256,
      });
      const call = forced.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call.function.name).toBe("add");
      expectMatchesSchema(call.function.arguments, ADD);
      const required = await client.chat.completions.create({
        model: "lori-demo",
        messages: MESSAGES,
        tools: TOOLS,
        tool_choice: "required",
        temperature: 1.3,
        seed,
        max_tokens: 256,
      });
      const chosen = required.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(["get_weather", "add"]).toContain(chosen.function.name);
      expectMatchesSchema(chosen.function.arguments, chosen.function.name === "add" ? ADD : WEATHER);
    }
  });

  it("streams tool_calls deltas that add up to the non-streamed call", async () => {
    const body = { model: "lori-demo", messages: MESSAGES, tools: TOOLS, tool_choice: FORCED, temperature: 0, max_tokens: 256 };
    const plain = await client.chat.completions.create(body);
    const stream = client.chat.completions.stream({ ...body, stream_options: { include_usage: true } });
    const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    for await (const chunk of stream) for (const choice of chunk.choices) deltas.push(...(choice.delta.tool_calls ?? []));
    const final = await stream.finalChatCompletion();
    expect(deltas[0]).toMatchObject({ index: 0, type: "function", function: { name: "get_weather", arguments: "" } });
    expect(deltas.length).toBeGreaterThan(2);
    const streamed = final.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    const expected = plain.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(streamed.function).toEqual(expected.function);
    expect(final.choices[0]!.finish_reason).toBe("tool_calls");
    expect(final.usage?.completion_tokens).toBe(plain.usage!.completion_tokens);
  });

  it("tool_choice auto answers with text or a valid call", async () => {
    const auto = await client.chat.completions.create({
      model: "lori-demo",
      messages: MESSAGES,
      tools: TOOLS,
      temperature: 0,
      max_tokens: 32,
    });
    const message = auto.choices[0]!.message;
    if (message.tool_calls) {
      const call = message.tool_calls[0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
      expectMatchesSchema(call.function.arguments, call.function.name === "add" ? ADD : WEATHER);
    } else {
      expect(typeof message.content).toBe("string");
      expect(["stop", "length"]).toContain(auto.choices[0]!.finish_reason);
    }
  });

  it("refuses inconsistent tool requests by field", async () => {
    const missing = await postJson(core, "/v1/chat/completions", {
      messages: MESSAGES,
      tools: TOOLS,
      tool_choice: { type: "function", function: { name: "nope" } },
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error.param).toBe("tool_choice");
    const withLogprobs = await postJson(core, "/v1/chat/completions", { messages: MESSAGES, tools: TOOLS, logprobs: true });
    expect(withLogprobs.json.error.param).toBe("logprobs");
    const noTools = await postJson(core, "/v1/chat/completions", { messages: MESSAGES, tool_choice: "required" });
    expect(noTools.status).toBe(400);
    const orphan = await postJson(core, "/v1/chat/completions", {
      messages: [...MESSAGES, { role: "tool", tool_call_id: "x", content: "1" }],
    });
    expect(orphan.status).toBe(400);
    expect(orphan.json.error.param).toBe("messages.1.tool_call_id");
    const badSchema = await postJson(core, "/v1/chat/completions", {
      messages: MESSAGES,
      tools: [{ type: "function", function: { name: "f", parameters: { type: "string" } } }],
      tool_choice: "required",
      stream: true,
    });
    expect(badSchema.status).toBe(400);
    expect(badSchema.json.error.param).toBe("tools");
  });
});

describe("tools on a chat template without a tool-call format", () => {
  let core: ServerCore;

  beforeAll(async () => {
    core = await createInProcessServer({ chatTemplate: CHATML_TEMPLATE }, { withDemoAdapters: false });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("answers 400 naming tools instead of ignoring them", async () => {
    const r = await postJson(core, "/v1/chat/completions", { messages: MESSAGES, tools: TOOLS, max_tokens: 4 });
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe("tools");
    expect(r.json.error.message).toContain("no tool-call format");
    const plain = await postJson(core, "/v1/chat/completions", { messages: MESSAGES, max_tokens: 4 });
    expect(plain.status).toBe(200);
  });
});
