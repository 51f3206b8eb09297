import type { LlamaEmbeddingContext, LlamaModel } from "node-llama-cpp";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, demoModelPath, postJson } from "../support/in-process.js";
import { getTestLlama } from "../support/test-llama.js";
import { inProcessClient } from "./openai-client.js";

// Both sides run the same forward pass on the same CPU build; 1e-5 absorbs thread-count reordering only.
const TOLERANCE = 1e-5;
const TEXTS = ["Q: Tom has 8 balls and buys 6 more. How many balls does Tom have?\nA:", "Hello!", "def add(a, b):"];

function maxAbsDiff(a: readonly number[], b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  return a.reduce((max, value, i) => Math.max(max, Math.abs(value - b[i]!)), 0);
}

describe("POST /v1/embeddings through the official client", () => {
  let core: ServerCore;
  let client: OpenAI;
  let model: LlamaModel;
  let reference: LlamaEmbeddingContext;

  beforeAll(async () => {
    core = await createInProcessServer();
    client = inProcessClient(core);
    model = await (await getTestLlama()).loadModel({ modelPath: demoModelPath });
    reference = await model.createEmbeddingContext({ contextSize: 256, threads: 1 });
  });
  afterAll(async () => {
    await reference?.dispose();
    await model?.dispose();
    await core?.dispose();
  });

  it("equals node-llama-cpp's own embedding of each input, float and base64, batched in order", async () => {
    const expected: number[][] = [];
    for (const text of TEXTS) expected.push([...(await reference.getEmbeddingFor(text)).vector]);
    const float = await client.embeddings.create({ model: "lori-demo", input: TEXTS, encoding_format: "float" });
    expect(float.object).toBe("list");
    expect(float.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(float.data[0]!.embedding).toHaveLength(model.embeddingVectorSize);
    float.data.forEach((d, i) => expect(maxAbsDiff(d.embedding, expected[i]!)).toBeLessThan(TOLERANCE));
    const lengths = TEXTS.map((text) => reference.calculateInputLength(text));
    expect(float.usage).toEqual({ prompt_tokens: lengths.reduce((a, b) => a + b, 0), total_tokens: lengths.reduce((a, b) => a + b, 0) });
    // The client asks for base64 by default and decodes it: the same float32 values.
    const decoded = await client.embeddings.create({ model: "lori-demo", input: TEXTS[1]! });
    expect(decoded.data).toHaveLength(1);
    expect(maxAbsDiff(decoded.data[0]!.embedding, float.data[1]!.embedding)).toBe(0);
  });

  it("differs with an adapter, the same whether named in model or adapter, and goes back to the base", async () => {
    const input = TEXTS[0]!;
    const base = (await client.embeddings.create({ model: "lori-demo", input, encoding_format: "float" })).data[0]!.embedding;
    const viaModel = (await client.embeddings.create({ model: "math", input, encoding_format: "float" })).data[0]!.embedding;
    const viaField = (
      await client.embeddings.create({
        model: "lori-demo",
        input,
        encoding_format: "float",
        adapter: ["math"],
      } as OpenAI.EmbeddingCreateParams)
    ).data[0]!.embedding;
    const half = (
      await client.embeddings.create({
        model: "lori-demo",
        input,
        encoding_format: "float",
        adapter: [{ name: "math", weight: 0.5 }],
      } as OpenAI.EmbeddingCreateParams)
    ).data[0]!.embedding;
    expect(maxAbsDiff(viaModel, base)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(viaModel, viaField)).toBeLessThan(TOLERANCE);
    expect(maxAbsDiff(half, base)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(half, viaModel)).toBeGreaterThan(1e-4);
    const baseAgain = (await client.embeddings.create({ model: "lori-demo", input, encoding_format: "float" })).data[0]!.embedding;
    expect(maxAbsDiff(baseAgain, base)).toBeLessThan(TOLERANCE);
  });

  it("refuses empty input, unknown token ids, other dimensions and unknown adapters", async () => {
    expect((await postJson(core, "/v1/embeddings", { input: "" })).status).toBe(400);
    expect((await postJson(core, "/v1/embeddings", { input: [] })).status).toBe(400);
    const ids = await postJson(core, "/v1/embeddings", { input: [1, 2, 99999] });
    expect(ids.status).toBe(400);
    expect(ids.json.error.param).toBe("input");
    const dims = await postJson(core, "/v1/embeddings", { input: "a", dimensions: 3 });
    expect(dims.status).toBe(400);
    expect(dims.json.error.param).toBe("dimensions");
    expect((await postJson(core, "/v1/embeddings", { input: "a", adapter: "nope" })).status).toBe(404);
    const long = await postJson(core, "/v1/embeddings", { input: "x".repeat(400) });
    expect(long.status).toBe(400);
    expect(long.json.error.param).toBe("input");
  });
});
