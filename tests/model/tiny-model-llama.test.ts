import { join } from "node:path";
import { LlamaChatSession, LlamaCompletion, resolveChatWrapper, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";

describe("a generated tiny model in node-llama-cpp", () => {
  const dir = useTempDir();
  let model: LlamaModel;

  beforeAll(async () => {
    const modelPath = join(dir.path, "tiny.gguf");
    await createTinyModel({ out: modelPath, seed: 1 });
    model = await (await getTestLlama()).loadModel({ modelPath });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it("exposes the byte tokenizer's special tokens", () => {
    expect([model.tokens.bos, model.tokens.eos, model.tokens.eot]).toEqual([256, 257, 259]);
    // Special tokens are parsed only when asked; the rest are bytes (id = byte value).
    expect(model.tokenize("<|im_start|>user\n", true)).toEqual([258, 117, 115, 101, 114, 10]);
  });

  it("round-trips arbitrary UTF-8 text byte for byte", () => {
    const samples = [
      "Hello , world . 'tis what it 's",
      "emoji 😀👩🏽‍🚀 and flags 🇫🇷",
      "日本語テキスト, Ελληνικά, עברית",
      "  leading and trailing spaces  ",
      "tabs\tnew\nlines\r\n and a NUL \u0000 byte",
      "<|im_start|> looks special but is plain text here",
    ];
    for (const text of samples) {
      const tokens = model.tokenize(text);
      expect(tokens.length, text).toBe(Buffer.byteLength(text, "utf8")); // one token per byte
      expect(model.detokenize(tokens), text).toBe(text);
    }
  });

  it("is recognised as a ChatML model from its chat template", () => {
    expect(resolveChatWrapper(model)?.wrapperName).toBe("ChatML");
  });

  it("generates deterministically at temperature 0", async () => {
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    try {
      const complete = async () => {
        const sequence = context.getSequence();
        try {
          return await new LlamaCompletion({ contextSequence: sequence }).generateCompletionWithMeta("Once upon", {
            maxTokens: 24,
            temperature: 0,
          });
        } finally {
          sequence.dispose();
        }
      };
      const first = await complete();
      const second = await complete();
      expect(first.response).toBe(second.response);
      expect(first.metadata.stopReason).toBe(second.metadata.stopReason);
    } finally {
      await context.dispose();
    }
  });

  it("answers a chat prompt through the ChatML wrapper", async () => {
    // One token per byte: node-llama-cpp's ~300-byte default system prompt alone overflows 256 tokens.
    const context = await model.createContext({ contextSize: 1024, threads: 1 });
    try {
      const session = new LlamaChatSession({ contextSequence: context.getSequence(), systemPrompt: "Be brief." });
      expect(session.chatWrapper.wrapperName).toBe("ChatML");
      const answer = await session.prompt("Hi!", { maxTokens: 8, temperature: 0 });
      expect(typeof answer).toBe("string");
      const history = session.getChatHistory();
      expect(history.map((item) => item.type)).toEqual(["system", "user", "model"]);
    } finally {
      await context.dispose();
    }
  });
});

describe("an f16 generated model in node-llama-cpp", () => {
  const dir = useTempDir();

  it("loads and generates", async () => {
    const modelPath = join(dir.path, "tiny-f16.gguf");
    await createTinyModel({ out: modelPath, dtype: "f16", layers: 1 });
    const model = await (await getTestLlama()).loadModel({ modelPath });
    try {
      const context = await model.createContext({ contextSize: 128, threads: 1 });
      const text = await new LlamaCompletion({ contextSequence: context.getSequence() }).generateCompletion("abc", {
        maxTokens: 4,
        temperature: 0,
      });
      expect(typeof text).toBe("string");
      await context.dispose();
    } finally {
      await model.dispose();
    }
  });
});
