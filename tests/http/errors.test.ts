import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer } from "../support/in-process.js";

// Runs on the committed demo model in process, so every clone runs it (no ../shared fixtures needed).

async function post(core: ServerCore, route: string, body: string, headers: Record<string, string> = {}) {
  const response = await core.app.request(route, {
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

/** Polls /ready until no sequence is busy; the deadline is a hang guard, far above any normal wind-down. */
async function waitUntilIdle(core: ServerCore): Promise<number> {
  const deadline = Date.now() + 30_000;
  let busy = -1;
  while (Date.now() < deadline) {
    const ready = (await (await core.app.request("/ready")).json()) as { models: Array<{ busy_sequences: number }> };
    busy = ready.models[0]!.busy_sequences;
    if (busy === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return busy;
}

describe("every failure answers with the OpenAI error envelope (demo model, in process)", () => {
  let t: ServerCore;
  let keyed: ServerCore;

  beforeAll(async () => {
    // One sequence, no queue: a second request while one runs is refused at once. The context is the demo
    // model's full 4096 so that a long generation can hold that sequence (see the 429 test).
    t = await createInProcessServer(
      { parallel: 1, maxLanes: 1, maxQueue: 0, contextSize: 4096, maxBodyBytes: 16_384 },
      { withDemoAdapters: false },
    );
    keyed = await createInProcessServer({ apiKeys: ["k1", "k2"] }, { withDemoAdapters: false });
  });
  afterAll(async () => {
    await t?.dispose();
    await keyed?.dispose();
  });

  it("400 for malformed JSON", async () => {
    const r = await post(t, "/v1/chat/completions", "{not json");
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { type: "invalid_request_error", code: "invalid_json" });
  });

  it("400 naming the field that fails validation", async () => {
    const r = await post(t, "/v1/chat/completions", JSON.stringify({ messages: [{ role: "wizard", content: "x" }] }));
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { param: "messages.0.role" });
    const t2 = await post(t, "/v1/completions", JSON.stringify({ prompt: "x", temperature: 7 }));
    expect(t2.status).toBe(400);
    expectEnvelope(t2.json, { param: "temperature" });
    // n above what the model runs at once (--parallel 1 here) is refused, naming n.
    const n = await post(t, "/v1/completions", JSON.stringify({ prompt: "x", n: 2 }));
    expect(n.status).toBe(400);
    expectEnvelope(n.json, { param: "n" });
  });

  it("ignores unknown extra fields, as OpenAI clients send many", async () => {
    const r = await post(t, "/v1/completions", JSON.stringify({ prompt: "Once", max_tokens: 2, foo: 1, user: "u", metadata: { a: 1 } }));
    expect(r.status).toBe(200);
  });

  it("404 for an unknown route and an unknown model", async () => {
    const route = await t.app.request("/v1/nothing");
    expect(route.status).toBe(404);
    expectEnvelope((await route.json()) as never, { code: "route_not_found" });
    const model = await post(t, "/v1/completions", JSON.stringify({ model: "missing", prompt: "x" }));
    expect(model.status).toBe(404);
    expectEnvelope(model.json, { code: "model_not_found", param: "model" });
  });

  it("413 for an oversize body", async () => {
    const r = await post(t, "/v1/completions", JSON.stringify({ prompt: "x".repeat(20_000) }));
    expect(r.status).toBe(413);
    expectEnvelope(r.json, { code: "payload_too_large" });
  });

  it("400 context_length_exceeded for a prompt longer than the context", async () => {
    // One token per byte on the demo model: 5,100 tokens in a 4,096-token context, in a body under the limit.
    const r = await post(t, "/v1/completions", JSON.stringify({ prompt: "Once upon a time ".repeat(300) }));
    expect(r.status).toBe(400);
    expectEnvelope(r.json, { code: "context_length_exceeded" });
  });

  it("429 with Retry-After when every sequence is busy and the queue is full", async () => {
    // The first request holds the only sequence: 4,000 tokens take seconds even on a fast machine (about
    // 10 ms each here), while the second request follows within milliseconds of its first chunk.
    const first = await t.app.request("/v1/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Once", max_tokens: 4000, ignore_eos: true, stream: true }),
    });
    expect(first.status).toBe(200);
    const reader = first.body!.getReader();
    await reader.read();
    try {
      const second = await post(t, "/v1/completions", JSON.stringify({ prompt: "Once", max_tokens: 2 }));
      expect(second.status).toBe(429);
      expect(Number(second.headers.get("retry-after"))).toBeGreaterThan(0);
      expectEnvelope(second.json, { type: "rate_limit_error", code: "queue_full" });
    } finally {
      await reader.cancel();
    }
    // Cancelling the stream frees the sequence, and the server serves again.
    expect(await waitUntilIdle(t)).toBe(0);
    expect((await post(t, "/v1/completions", JSON.stringify({ prompt: "Once", max_tokens: 2 }))).status).toBe(200);
  });

  it("401 without or with a wrong key; /health stays open", async () => {
    const none = await post(keyed, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }));
    expect(none.status).toBe(401);
    expectEnvelope(none.json, { type: "authentication_error" });
    const wrong = await post(keyed, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }), {
      Authorization: "Bearer nope",
    });
    expect(wrong.status).toBe(401);
    expectEnvelope(wrong.json, { type: "authentication_error" });
    const models = await keyed.app.request("/v1/models");
    expect(models.status).toBe(401);
    const ok = await post(keyed, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1 }), { Authorization: "Bearer k2" });
    expect(ok.status).toBe(200);
    expect((await keyed.app.request("/health")).status).toBe(200);
  });

  it("never crashes on hostile shapes", async () => {
    const bodies = ["null", "[]", "1", '"x"', '{"messages": null}', '{"messages": [{}]}', '{"prompt": {"a": 1}}', '{"stop": [1,2]}'];
    for (const body of bodies) {
      for (const route of ["/v1/chat/completions", "/v1/completions"]) {
        const r = await post(t, route, body);
        expect(r.status).toBe(400);
        expectEnvelope(r.json, { type: "invalid_request_error" });
      }
    }
    expect((await t.app.request("/health")).status).toBe(200);
  });
});
