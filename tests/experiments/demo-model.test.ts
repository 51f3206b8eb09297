import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_MODEL_PATH } from "../../src/model/embedded-model.js";
import { mathTask } from "../../src/tasks/math-task.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";

// The README's first example against the committed demo model and adapters, as `npm start` serves them: the
// `math` adapter answers a held-out word problem, the base model alone does not.

const ADAPTERS_DIR = fileURLToPath(new URL("../../adapters", import.meta.url));
const PROMPT = "Q: Tom has 8 balls and buys 6 more. How many balls does Tom have?\nA:";

describe.skipIf(!existsSync(DEMO_MODEL_PATH))("the shipped demo model and adapters (README quick start)", () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer({ adaptersDir: ADAPTERS_DIR });
  });

  afterAll(async () => {
    await t?.server.close();
  });

  it("is served by default as lori-demo, with the four demo adapters", async () => {
    const ids = (await t.client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(["lori-demo", "math", "code", "nlu", "safety"]));
  });

  it("uses a question from the math test split, which no training split contains", () => {
    const { train, test } = mathTask.generate(0, { train: 350, test: 100 });
    expect(test.some((e) => "prompt" in e && e.prompt === PROMPT)).toBe(true);
    expect(train.some((e) => "prompt" in e && e.prompt === PROMPT)).toBe(false);
  });

  it("answers it with the math adapter and not without", async () => {
    const ask = async (adapter?: string[]) => {
      const body = { model: "lori-demo", prompt: PROMPT, max_tokens: 16, stop: ["\n"], temperature: 0, ...(adapter ? { adapter } : {}) };
      const completion = await t.client.completions.create(body as Parameters<typeof t.client.completions.create>[0] & { stream?: false });
      return completion.choices[0]!.text;
    };
    const withMath = await ask(["math"]);
    const without = await ask();
    console.log(`demo: with math ${JSON.stringify(withMath)}, without ${JSON.stringify(without)}`);
    expect(withMath).toBe(" 8 + 6 = 14");
    expect(mathTask.score({ id: "q", task: "math", prompt: PROMPT, completion: " 8 + 6 = 14", meta: { answer: 14 } }, without)).toBe(false);
  });
});
