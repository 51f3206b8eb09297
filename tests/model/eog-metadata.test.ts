// llama.cpp warns "special_eos_id is not in special_eog_ids" at every load when the EOS token's text is not one
// of the names it recognises as end-of-generation. Our writer and the shipped demo model must load silently.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { DEMO_MODEL_PATH } from "../../src/model/embedded-model.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";

describe("end-of-generation metadata", () => {
  const tmp = useTempDir();
  let llama: Llama;
  const warnings: string[] = [];

  beforeAll(async () => {
    llama = await getLlama({
      gpu: false,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        if (level === LlamaLogLevel.warn || level === LlamaLogLevel.error) warnings.push(message.trim());
      },
    });
  });

  afterAll(async () => {
    await llama?.dispose();
  });

  async function loadQuietly(path: string): Promise<void> {
    warnings.length = 0;
    const model = await llama.loadModel({ modelPath: path });
    try {
      const eos = model.tokens.eos!;
      expect(eos).toBe(257);
      expect(model.isEogToken(eos)).toBe(true);
      expect(model.isEogToken(model.tokens.eot!)).toBe(true);
      expect(model.isEogToken(65 as typeof eos)).toBe(false);
    } finally {
      await model.dispose();
    }
    expect(warnings.filter((w) => /eog|eos|eot|tokenizer/i.test(w))).toEqual([]);
  }

  it("a freshly generated tiny model loads without tokenizer warnings, EOS and EOT ending generation", async () => {
    const path = join(tmp.path, "tiny.gguf");
    await createTinyModel({ out: path, seed: 2 });
    await loadQuietly(path);
  });

  it.skipIf(!existsSync(DEMO_MODEL_PATH))("the committed demo model loads without tokenizer warnings", async () => {
    const tokens = (await readGgufFile(DEMO_MODEL_PATH)).metadata.get("tokenizer.ggml.tokens")!.value as string[];
    expect(tokens[257]).toBe("<|endoftext|>");
    await loadQuietly(DEMO_MODEL_PATH);
  });
});
