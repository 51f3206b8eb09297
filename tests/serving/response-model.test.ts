import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";

describe("the model a response names", () => {
  let core: ServerCore;

  beforeAll(async () => {
    core = await createInProcessServer();
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("is the adapter's id when the request named an adapter as its model, as vLLM answers", async () => {
    const viaAdapter = await postJson(core, "/v1/completions", { model: "math", prompt: "Q: 2 + 3?\nA:", max_tokens: 2 });
    expect(viaAdapter.status).toBe(200);
    expect(viaAdapter.json.model).toBe("math");
    const chat = await postJson(core, "/v1/chat/completions", {
      model: "math",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 2,
    });
    expect(chat.json.model).toBe("math");
  });

  it("is the base model's id otherwise, with or without the adapter field", async () => {
    const plain = await postJson(core, "/v1/completions", { prompt: "Q: 2 + 3?\nA:", max_tokens: 2 });
    expect(plain.json.model).toBe("lori-demo");
    const withField = await postJson(core, "/v1/completions", { model: "lori-demo", adapter: ["math"], prompt: "x", max_tokens: 2 });
    expect(withField.json.model).toBe("lori-demo");
  });
});
