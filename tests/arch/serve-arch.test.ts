// The server's adapter path on every non-llama family: imported PEFT adapters requested per call as
// a:0.7 + b:-1.3 are compiled by the server (one cat-merged GGUF LoRA) and must generate exactly what
// node-llama-cpp generates greedily with the two adapters' own GGUF LoRAs stacked at (0.7, -1.3).

import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { writeAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import { importAdapterDir } from "../../src/lora/peft-import.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { createArchModel } from "../../src/model/arch-tiny-model.js";
import { randomPeftTensors, writePeftDir } from "../lora/peft-fixtures.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { adaptableShapesOfGguf } from "./helpers.js";

const PROMPTS = ["Once upon a time", "The little dog"];
const MAX_TOKENS = 16;

describe.each(["qwen2", "qwen3", "gemma2", "gemma3", "phi3"] as const)("serving a %s model with adapters", (arch) => {
  const dir = useTempDir();
  let core: ServerCore | undefined;
  afterAll(async () => {
    await core?.dispose();
  });

  it("generates what node-llama-cpp generates with the stacked adapters, and refuses a llama adapter", async () => {
    const modelPath = join(dir.path, `${arch}.gguf`);
    await createArchModel({ out: modelPath, architecture: arch, seed: 4 });
    const header = await readGgufFile(modelPath);
    core = await createInProcessServer({ models: [`tiny=${modelPath}`] }, { withDemoAdapters: false });

    const files: string[] = [];
    for (const [name, seed] of [
      ["a", 1],
      ["b", 2],
    ] as const) {
      const source = join(dir.path, `peft-${name}`);
      await writePeftDir(source, {
        rank: 4,
        alpha: 8,
        tensors: randomPeftTensors(adaptableShapesOfGguf(header), { rank: 4, seed, bScale: 0.5 }),
      });
      const { adapter } = await importAdapterDir(source, header);
      await writeAdapterDir(join(core.adapters.dir, name), adapter);
      const file = join(dir.path, `${name}.gguf`);
      await compileGgufLora(adapter, header, file);
      files.push(file);
    }
    // One made for a llama base of the same size: the server must not apply it to this model.
    const llamaBase = join(dir.path, "llama.gguf");
    await createArchModel({ out: llamaBase, architecture: "llama", seed: 4 });
    const llamaHeader = await readGgufFile(llamaBase);
    const llamaSource = join(dir.path, "peft-llama");
    await writePeftDir(llamaSource, {
      rank: 2,
      alpha: 2,
      tensors: randomPeftTensors(adaptableShapesOfGguf(llamaHeader).slice(0, 2), { rank: 2, seed: 3 }),
    });
    await writeAdapterDir(join(core.adapters.dir, "for-llama"), (await importAdapterDir(llamaSource, llamaHeader)).adapter);
    await core.adapters.refresh();

    const model = await (await getTestLlama()).loadModel({ modelPath });
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
      for (const prompt of PROMPTS) {
        const sequence = context.getSequence();
        const tokens = [model.tokens.bos!, ...model.tokenize(prompt, false)];
        const out: Token[] = [];
        for await (const token of sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true })) {
          out.push(token);
          if (out.length >= MAX_TOKENS) break;
        }
        sequence.dispose();
        const stacked = model.detokenize(out, false, tokens);
        const request = { model: "tiny", prompt, max_tokens: MAX_TOKENS, temperature: 0 };
        const served = await postJson(core, "/v1/completions", {
          ...request,
          adapter: [
            { name: "a", weight: 0.7 },
            { name: "b", weight: -1.3 },
          ],
        });
        expect(served.status, served.text).toBe(200);
        // Random byte models emit invalid UTF-8: the server holds back an incomplete sequence at the end,
        // detokenize shows it as U+FFFD. Everything before must be identical.
        const visible = (text: string) => text.replace(/\uFFFD+$/, "");
        expect(visible(served.json.choices[0].text), `${arch}: ${prompt}`).toBe(visible(stacked));
        expect(visible(stacked).length).toBeGreaterThan(4);
        const base = await postJson(core, "/v1/completions", request);
        expect(visible(base.json.choices[0].text)).not.toBe(visible(stacked));
      }
    } finally {
      await context.dispose();
      await model.dispose();
    }
    // An adapter that fits no served model is never listed (the store validates against the bases), so it
    // does not exist for requests either.
    const refused = await postJson(core, "/v1/completions", { model: "tiny", prompt: "x", max_tokens: 2, adapter: "for-llama" });
    expect(refused.status).toBe(404);
    expect(refused.json.error.code).toBe("adapter_not_found");
    expect(core.adapters.get("for-llama")).toBeUndefined();
  });
});
