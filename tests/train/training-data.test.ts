import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { resolveChatFormat } from "../../src/engine/chat-prompt.js";
import {
  alpacaPrompt,
  endOfTurnTokens,
  parseTrainingJsonl,
  splitValidation,
  tokenizeRecords,
  TrainingDataError,
} from "../../src/train/training-data.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { toJsonl } from "./helpers.js";

describe("training data", () => {
  const tmp = useTempDir("lori-train-data-");
  let model: LlamaModel;

  beforeAll(async () => {
    const path = join(tmp.path, "tiny.gguf");
    await createTinyModel({ out: path });
    model = await (await getTestLlama()).loadModel({ modelPath: path, vocabOnly: true });
  });
  afterAll(async () => model?.dispose());

  it("parses the three formats and names the line of a bad record", () => {
    const text = toJsonl([
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "yo" },
        ],
      },
      { prompt: "a", completion: "b" },
      { instruction: "do", input: "x", output: "done" },
    ]);
    const records = parseTrainingJsonl(`\n${text}`, "d.jsonl");
    expect(records.map((r) => [r.kind, r.line])).toEqual([
      ["chat", 2],
      ["completion", 3],
      ["completion", 4],
    ]);
    expect(records[2]).toMatchObject({ prompt: alpacaPrompt("do", "x"), completion: "done" });
    expect(alpacaPrompt("do", undefined)).toContain("### Instruction:\ndo\n\n### Response:\n");

    const bad = (line: string) => () => parseTrainingJsonl(`${toJsonl([{ prompt: "a", completion: "b" }])}${line}\n`, "d.jsonl");
    expect(bad("{nope")).toThrow(TrainingDataError);
    expect(bad("{nope")).toThrow(/^d\.jsonl line 2: invalid JSON/);
    expect(bad('{"prompt": "a", "completion": 3}')).toThrow("d.jsonl line 2: 'completion' must be a string");
    expect(bad('{"messages": [{"role": "user", "content": "x"}]}')).toThrow("line 2: no assistant message");
    expect(bad('{"messages": [{"role": "robot", "content": "x"}]}')).toThrow("line 2: messages[0].role");
    expect(bad('{"texts": "x"}')).toThrow("line 2: unknown record format");
    expect(bad('{"text": 3}')).toThrow("d.jsonl line 2: 'text' must be a string");
    expect(bad('{"text": null}')).toThrow("d.jsonl line 2: 'text' must be a string");
    expect(bad('{"text": ""}')).toThrow("d.jsonl line 2: 'text' is empty");
  });

  it("supervises exactly the completion tokens and EOS, after BOS + tokenize(prompt) as /v1/completions sees it", () => {
    const [seq] = tokenizeRecords(parseTrainingJsonl(toJsonl([{ prompt: "Hello", completion: " world" }]), "d"), { model });
    const prompt = [model.tokens.bos!, ...model.tokenize("Hello", false)];
    const completion = [...model.tokenize(" world", false, "trimLeadingSpace"), model.tokens.eos!];
    expect(seq!.tokens).toEqual([...prompt, ...completion]);
    expect(seq!.supervised).toEqual([...prompt.map(() => false), ...completion.map(() => true)]);
    expect(model.detokenize(seq!.tokens.filter((_, i) => seq!.supervised[i]) as never, true)).toBe(" world<|endoftext|>");
  });

  it("supervises each assistant turn and its end-of-turn token, nothing of the prompt (ChatML template)", () => {
    const format = resolveChatFormat(model, undefined);
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "user", content: "again" },
      { role: "assistant", content: "ok!" },
    ];
    const sequences = tokenizeRecords(parseTrainingJsonl(toJsonl([{ messages }]), "d"), { model, chatFormat: format });
    expect(sequences).toHaveLength(1);
    const { tokens, supervised } = sequences[0]!;
    const imEnd = model.tokenize("<|im_end|>", true);
    expect(imEnd).toHaveLength(1);
    expect(endOfTurnTokens(model, format)).toEqual(imEnd);
    // Independently: the supervised spans are the byte tokens of each answer followed by <|im_end|>.
    const spans: number[][] = [];
    tokens.forEach((t, i) => {
      if (!supervised[i]) return;
      if (i === 0 || !supervised[i - 1]) spans.push([]);
      spans.at(-1)!.push(t);
    });
    expect(spans).toEqual([
      [...model.tokenize("yo", false), ...imEnd],
      [...model.tokenize("ok!", false), ...imEnd],
    ]);
    const text = model.detokenize(tokens as never, true);
    expect(text).toContain("<|im_start|>system\nBe brief.<|im_end|>");
    expect(text).toContain("<|im_start|>assistant\nyo<|im_end|>");
    expect(text.endsWith("<|im_start|>assistant\nok!<|im_end|>")).toBe(true);
  });

  it("tokenizes text records with special tokens as BOS + text + EOS, every token after the first supervised", () => {
    const text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\nThe end.";
    const records = parseTrainingJsonl(toJsonl([{ text }, { text: "plain" }]), "d");
    expect(records.map((r) => r.kind)).toEqual(["text", "text"]);
    const [chatml, plain] = tokenizeRecords(records, { model });
    const [imStart, imEnd, bos, eos] = ["<|im_start|>", "<|im_end|>", "<|bos|>", "<|endoftext|>"].map((t) => {
      const ids = model.tokenize(t, true);
      expect(ids).toHaveLength(1);
      return ids[0]!;
    });
    expect(bos).toBe(model.tokens.bos);
    expect(eos).toBe(model.tokens.eos);
    // Independently of the code under test: the byte tokenizer spells every other character as its own byte.
    const bytes = (s: string) => [...Buffer.from(s, "utf8")];
    const expected = [
      bos!,
      imStart!,
      ...bytes("user\nhi"),
      imEnd!,
      ...bytes("\n"),
      imStart!,
      ...bytes("assistant\nyo"),
      imEnd!,
      ...bytes("\nThe end."),
      eos!,
    ];
    expect(chatml!.tokens).toEqual(expected);
    expect(chatml!.supervised).toEqual(expected.map((_, i) => i > 0));
    expect(model.detokenize(chatml!.tokens as never, true)).toBe(`<|bos|>${text}<|endoftext|>`);
    expect(plain!.tokens).toEqual([bos!, ...bytes("plain"), eos!]);
    expect(plain!.supervised).toEqual([false, true, true, true, true, true, true]);
    // A text that already starts with BOS does not get a second one.
    const [withBos] = tokenizeRecords(parseTrainingJsonl(toJsonl([{ text: "<|bos|>x" }]), "d"), { model });
    expect(withBos!.tokens).toEqual([bos!, ...bytes("x"), eos!]);
  });

  it("leaves a weight-0 assistant turn unsupervised", () => {
    const messages = [
      { role: "user", content: "a" },
      { role: "assistant", content: "skip", weight: 0 },
      { role: "user", content: "b" },
      { role: "assistant", content: "keep" },
    ];
    const [seq] = tokenizeRecords(parseTrainingJsonl(toJsonl([{ messages }]), "d"), {
      model,
      chatFormat: resolveChatFormat(model, undefined),
    });
    const supervisedText = model.detokenize(seq!.tokens.filter((_, i) => seq!.supervised[i]) as never, true);
    expect(supervisedText).toBe("keep<|im_end|>");
  });

  it("splits validation records deterministically by seed", () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const a = splitValidation(items, 0.1, 7);
    expect(a.validation).toHaveLength(2);
    expect(splitValidation(items, 0.1, 7)).toEqual(a);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(items);
    expect(splitValidation(items, 0, 7).validation).toEqual([]);
  });
});
