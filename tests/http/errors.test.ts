import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";

async function post(baseUrl: string, route: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${baseUrl}${route}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });
  return { status: response.status, headers: response.headers, json: (await response.json()) as { error: Record<string, unknown> } };
}

function expectEnvelope(json: { error: Record<string, unknown> }, fields: Record<string, unknown>) {
  expect(Object.keys(json.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof json.error.message).toBe("string");
  expect(json.error).toMatchObject(fields);
}

describe.skipIf(skipWithoutStories)("every failure answers with the OpenAI error envelope", () => {
  let t: TestServer;
  let keyed: TestServer;

  beforeAll(async () => {
    t = await startTestServer({
      models: [`stories=${storiesModelPath}`],
      parallel: 1,
      maxLanes: 1,
      maxQueue: 0,
      contextSize: 128,
      maxBodyBytes: 4096,
    });
    keyed = await startTestServer({ models: [`stories=${storiesModelPath}`], apiKeys: ["k1", "k2"] });
  });
  afterAll(async () => {
    await t?.server.close();
    await keyed?.server.close();
  });

  it("400 for malformed JSON", async () => {
    const r = await post(t.baseUrl, "/v1/chat/completions", "{not json");
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { type: "invalid_request_error", code: "invalid_json" });
  });

  it("400 naming the field that fails validation", async () => {
    const r = await post(t.baseUrl, "/v1/chat/completions", JSON.stringify({ messages: [{ role: "wizard", content: "x" }] }));
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { param: "messages.0.role" });
    const t2 = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x", temperature: 7 }));
    expect(t2.status).toBe(400);
    expectEnvelope(t2.json, { param: "temperature" });
    const n = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x", n: 2 }));
    expect(n.status).toBe(400);
    expectEnvelope(n.json, { param: "n" });
  });

  it("ignores unknown extra fields, as OpenAI clients send many", async () => {
    const r = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "Once", max_tokens: 2, foo: 1, logit_bias: {} }));
    expect(r.status).toBe(200);
  });

  it("404 for an unknown route and an unknown model", async () => {
    const route = await fetch(`${t.baseUrl}/v1/nothing`);
    expect(route.status).toBe(404);
    expectEnvelope((await route.json()) as never, { code: "route_not_found" });
    const model = await post(t.baseUrl, "/v1/completions", JSON.stringify({ model: "missing", prompt: "x" }));
    expect(model.status).toBe(404);
    expectEnvelope(model.json, { code: "model_not_found", param: "model" });
  });

  it("413 for an oversize body", async () => {
    const r = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x".repeat(10_000) }));
    expect(r.status).toBe(413);
    expectEnvelope(r.json, { code: "payload_too_large" });
  });

  it("400 context_length_exceeded for a prompt longer than the context", async () => {
    const r = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "Once upon a time ".repeat(200) }));
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { code: "context_length_exceeded" });
  });

  it("429 with Retry-After when every sequence is busy and the queue is full", async () => {
    const controller = new AbortController();
    const first = await fetch(`${t.baseUrl}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Once", max_tokens: 100, ignore_eos: true, stream: true }),
      signal: controller.signal,
    });
    const reader = first.body!.getReader();
    await reader.read();
    const second = await post(t.baseUrl, "/v1/completions", JSON.stringify({ prompt: "Once", max_tokens: 2 }));
    expect(second.status).toBe(429);
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThan(0);
    expectEnvelope(second.json, { type: "rate_limit_error", code: "queue_full" });
    controller.abort();
  });

  it("401 without or with a wrong key; /health stays open", async () => {
    const none = await post(keyed.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }));
    expect(none.status).toBe(401);
    expectEnvelope(none.json, { type: "authentication_error" });
    const wrong = await post(keyed.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }), {
      Authorization: "Bearer nope",
    });
    expect(wrong.status).toBe(401);
    const models = await fetch(`${keyed.baseUrl}/v1/models`);
    expect(models.status).toBe(401);
    const ok = await post(keyed.baseUrl, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }), { Authorization: "Bearer k2" });
    expect(ok.status).toBe(200);
    expect((await fetch(`${keyed.baseUrl}/health`)).status).toBe(200);
  });

  it("never crashes on hostile shapes", async () => {
    const bodies = ["null", "[]", "1", '"x"', '{"messages": null}', '{"messages": [{}]}', '{"prompt": {"a": 1}}', '{"stop": [1,2]}'];
    for (const body of bodies) {
      for (const route of ["/v1/chat/completions", "/v1/completions"]) {
        const r = await post(t.baseUrl, route, body);
        expect(r.status).toBe(400);
      }
    }
    expect((await fetch(`${t.baseUrl}/health`)).status).toBe(200);
  });
});
