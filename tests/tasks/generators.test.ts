import { describe, expect, it } from "vitest";
import { generateBaseCorpus } from "../../src/tasks/base-corpus.js";
import { splitOf } from "../../src/tasks/split-sampler.js";
import { isChatExample, toJsonl, type Example } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { parseTrainingJsonl } from "../../src/train/training-data.js";

const keyOf = (e: Example) => (isChatExample(e) ? e.messages[0]!.content : e.prompt);

describe.each(Object.values(TASKS))("the $id generator", (task) => {
  const sizes = { train: 60, test: 20 };

  it("gives the same data for the same seed and different data for another", () => {
    const a = task.generate(7, sizes);
    expect(task.generate(7, sizes)).toEqual(a);
    expect(a.train).toHaveLength(60);
    expect(a.test).toHaveLength(20);
    expect(task.generate(8, sizes).test.map(keyOf)).not.toEqual(a.test.map(keyOf));
  });

  it("keeps train and test disjoint across seeds, and the test split independent of the train size", () => {
    const train = new Set(
      [...task.generate(1, { train: 100, test: 0 }).train, ...task.generate(2, { train: 100, test: 0 }).train].map(keyOf),
    );
    const test = task.generate(3, { train: 0, test: 30 }).test;
    expect(test.filter((e) => train.has(keyOf(e)))).toEqual([]);
    expect(test.every((e) => splitOf(keyOf(e)) === "test")).toBe(true);
    expect(task.generate(3, { train: 200, test: 10 }).test).toEqual(test.slice(0, 10));
  });

  it("writes JSONL the trainer reads, in the task's format, and scores its own references as correct", async () => {
    const { train, test } = task.generate(0, { train: 5, test: 3 });
    const records = parseTrainingJsonl(toJsonl([...train, ...test]), `${task.id}.jsonl`);
    expect(records).toHaveLength(8);
    expect(records.every((r) => r.kind === task.format)).toBe(true);
    for (const e of test) {
      const reference = isChatExample(e) ? e.messages.at(-1)!.content : e.completion;
      expect(await task.score(e, reference)).toBe(true);
    }
  });
});

describe("a request larger than a task's item space", () => {
  it.each(["code", "safety"] as const)("is refused by %s with a clear error", (id) => {
    expect(() => TASKS[id].generate(0, { train: 0, test: 5000 })).toThrow(/task .+: only \d+ distinct test examples found/);
  });
});

describe("the base corpus", () => {
  it("is deterministic text records, part of them ChatML conversations", () => {
    const corpus = generateBaseCorpus(4, 200);
    expect(generateBaseCorpus(4, 200)).toEqual(corpus);
    expect(generateBaseCorpus(5, 200)).not.toEqual(corpus);
    expect(corpus.every((r) => typeof r.text === "string" && r.text.length > 0)).toBe(true);
    const chats = corpus.filter((r) => r.text.startsWith("<|im_start|>user\n"));
    expect(chats.length).toBeGreaterThan(20);
    expect(chats[0]!.text).toMatch(/<\|im_end\|>\n<\|im_start\|>assistant\n.+<\|im_end\|>\n$/);
  });
});
