import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";

describe.skipIf(skipWithoutStories)("an adapter merged over HTTP equals real stacking in node-llama-cpp (stories260K)", () => {
  const dir = useTempDir();
  let t: TestServer;

  beforeAll(async () => {
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "a", seed: 21, bScale: 0.6 });
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "b", seed: 22, bScale: 0.6, sparsity: 0.9 });
    t = await startTestServer({ models: [`stories=${storiesModelPath}`], adaptersDir: dir.path });
  });
  afterAll(async () => t?.server.close());

  it("POST /adapters/merge cat (0.7, -1.3) serves the same greedy text as a context stacking a and b at those scales", async () => {
    const merge = await fetch(`${t.baseUrl}/adapters/merge`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        method: "cat",
        name: "ab",
        adapters: [
          { name: "a", weight: 0.7 },
          { name: "b", weight: -1.3 },
        ],
      }),
    });
    expect(merge.status).toBe(201);
    const created = (await merge.json()) as { id: string; parent: string; lori: { lineage: Array<{ op: string }> } };
    expect(created).toMatchObject({ id: "ab", parent: "stories" });
    expect(created.lori.lineage.at(-1)!.op).toContain("merge");

    // Real stacking: each original adapter compiled on its own, both set on one context with the weights as scales.
    const header = await readGgufFile(storiesModelPath!);
    const files: string[] = [];
    for (const name of ["a", "b"]) {
      const file = path.join(dir.path, `${name}-stack.gguf`);
      await compileGgufLora(await readAdapterDir(path.join(dir.path, name)), header, file);
      files.push(file);
    }
    const llama = await getTestLlama();
    const model = await llama.loadModel({ modelPath: storiesModelPath! });
    const context = await model.createContext({
      contextSize: 256,
      threads: 1,
      lora: {
        adapters: [
          { filePath: files[0]!, scale: 0.7 },
          { filePath: files[1]!, scale: -1.3 },
        ],
      },
    });
    try {
      for (const prompt of ["Once upon a time", "The little dog", "Lily had a red"]) {
        const sequence = context.getSequence();
        const tokens = [model.tokens.bos!, ...model.tokenize(prompt, false)];
        const out: number[] = [];
        for await (const token of sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true })) {
          out.push(token);
          if (out.length >= 24) break;
        }
        sequence.dispose();
        const stacked = model.detokenize(out as never, false, tokens);
        const served = await t.client.completions.create({
          model: "stories",
          prompt,
          max_tokens: 24,
          temperature: 0,
          adapter: ["ab"],
        } as never);
        expect(served.choices[0]!.text).toBe(stacked);
        const base = await t.client.completions.create({ model: "stories", prompt, max_tokens: 24, temperature: 0 });
        expect(base.choices[0]!.text).not.toBe(stacked);
        const viaModelName = await t.client.completions.create({ model: "ab", prompt, max_tokens: 24, temperature: 0 });
        expect(viaModelName.choices[0]!.text).toBe(stacked);
      }
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });
});
