import { readdir } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";

/**
 * POST /adapters/merge with the methods of issue 16 item 5 on the in-process server (demo model, the four
 * demo LoRI-S adapters, all rank 16): a ties merge is stored and served; every refusal is one 400 in the
 * OpenAI error envelope naming the offending field, and leaves the store as it was.
 */
describe("POST /adapters/merge: ties, dare, magnitude_prune, svd", () => {
  let core: ServerCore;
  const storeListing = async () => (await readdir(core.adapters.dir)).filter((name) => name !== ".compiled").sort();

  beforeAll(async () => {
    core = await createInProcessServer({}, { withDemoAdapters: true });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("stores a ties merge (negative weight included) and serves a completion with it", async () => {
    const merge = await postJson(core, "/adapters/merge", {
      method: "ties",
      name: "ties-math-code",
      adapters: [
        { name: "math", weight: 0.6 },
        { name: "code", weight: -0.3 },
      ],
      density: 0.3,
      majority_sign_method: "frequency",
    });
    expect(merge.status, merge.text).toBe(201);
    expect(merge.json).toMatchObject({
      id: "ties-math-code",
      lori: {
        variant: "lora",
        rank: 16,
        alpha: 16,
        lineage: [{ op: "merge", method: "ties", density: 0.3, majority_sign_method: "frequency" }],
      },
    });
    const completion = await postJson(core, "/v1/completions", {
      model: "ties-math-code",
      prompt: "Q: 2 + 3?\nA:",
      max_tokens: 4,
      temperature: 0,
    });
    expect(completion.status, completion.text).toBe(200);
    expect(completion.json.choices[0].text).toEqual(expect.any(String));
  });

  it("stores dare_ties with a seed and svd with a rank", async () => {
    const dare = await postJson(core, "/adapters/merge", {
      method: "dare_ties",
      name: "dare-math-nlu",
      adapters: [{ name: "math" }, { name: "nlu", weight: 0.5 }],
      seed: 42,
    });
    expect(dare.status, dare.text).toBe(201);
    const svd = await postJson(core, "/adapters/merge", { method: "svd", name: "math-r8", adapters: [{ name: "math" }], rank: 8 });
    expect(svd.status, svd.text).toBe(201);
  });

  const refusals: ReadonlyArray<readonly [string, Record<string, unknown>, string, RegExp]> = [
    [
      "a density for cat",
      { method: "cat", density: 0.5 },
      "density",
      /density applies only to ties, dare_linear, dare_ties and magnitude_prune, not to cat/,
    ],
    ["a density for svd", { method: "svd", density: 0.5 }, "density", /not to svd/],
    ["density 0", { method: "ties", density: 0 }, "density", /density/],
    ["density 1.5", { method: "dare_linear", density: 1.5 }, "density", /density/],
    [
      "a majority sign for linear",
      { method: "linear", majority_sign_method: "total" },
      "majority_sign_method",
      /applies only to ties and dare_ties, not to linear/,
    ],
    ["an unknown majority sign", { method: "ties", majority_sign_method: "median" }, "majority_sign_method", /majority_sign_method/],
    ["a seed for ties", { method: "ties", seed: 3 }, "seed", /seed applies only to dare_linear and dare_ties/],
    ["a fractional seed", { method: "dare_ties", seed: 1.5 }, "seed", /seed/],
    ["a rank for ties", { method: "ties", rank: 4 }, "rank", /rank applies only to svd/],
    ["an svd rank above a module's size", { method: "svd", rank: 100_000 }, "rank", /rank 100000 exceeds layer 0/],
    ["an unknown method", { method: "ties_svd" }, "method", /method/],
  ];

  for (const [label, body, param, message] of refusals) {
    it(`refuses ${label}: 400 with param '${param}', nothing written`, async () => {
      const before = await storeListing();
      const response = await postJson(core, "/adapters/merge", {
        name: "refused",
        adapters: [{ name: "math" }, { name: "code", weight: -0.5 }],
        ...body,
      });
      expect(response.status, response.text).toBe(400);
      expect(response.json.error).toMatchObject({ type: "invalid_request_error", param });
      expect(response.json.error.message).toMatch(message);
      expect(response.json.error.message).not.toContain("\n");
      expect((await core.app.request("/adapters/refused")).status).toBe(404);
      expect(await storeListing()).toEqual(before);
    });
  }

  it("refuses unequal ranks for linear, ties, dare_linear, dare_ties and magnitude_prune (param 'adapters')", async () => {
    const r8 = await postJson(core, "/adapters/merge", { method: "svd", name: "safety-r8", adapters: [{ name: "safety" }], rank: 8 });
    expect(r8.status, r8.text).toBe(201);
    const before = await storeListing();
    for (const method of ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]) {
      const response = await postJson(core, "/adapters/merge", {
        method,
        name: "refused",
        adapters: [{ name: "math" }, { name: "safety-r8" }],
      });
      expect(response.status, response.text).toBe(400);
      expect(response.json.error).toMatchObject({ type: "invalid_request_error", param: "adapters" });
      expect(response.json.error.message).toMatch(new RegExp(`${method} merge needs equal ranks .*ranks 16, 8`));
    }
    expect(await storeListing()).toEqual(before);
  });
});
