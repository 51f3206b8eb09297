import { describe, expect, it } from "vitest";
import { generateBaseCorpus } from "../../src/tasks/base-corpus.js";
import { keyHash, splitOf } from "../../src/tasks/split-sampler.js";
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

  it("keeps train, dev and test disjoint by prompt hash at the largest sizes it offers", () => {
    const { maxSizes } = task;
    const splits = task.generate(5, { train: 300, dev: maxSizes.dev, test: maxSizes.test });
    expect(splits.dev).toHaveLength(maxSizes.dev);
    expect(splits.test).toHaveLength(maxSizes.test);
    const hashes = (examples: readonly Example[]) => new Set(examples.map((e) => keyHash(keyOf(e))));
    const [train, dev, test] = [hashes(splits.train), hashes(splits.dev), hashes(splits.test)];
    // distinct prompts within a split, and no prompt hash in two splits
    expect([train.size, dev.size, test.size]).toEqual([300, maxSizes.dev, maxSizes.test]);
    for (const [a, b] of [
      [train, dev],
      [train, test],
      [dev, test],
    ] as const) {
      expect([...a].filter((h) => b.has(h))).toEqual([]);
    }
    // and the same holds across seeds: the split of a prompt does not depend on the seed
    const otherDev = hashes(task.generate(6, { train: 0, dev: maxSizes.dev, test: 0 }).dev);
    expect([...otherDev].filter((h) => train.has(h) || test.has(h))).toEqual([]);
    expect(task.defaultTestSize).toBeLessThanOrEqual(maxSizes.test);
  });

  // The code task runs a sandboxed node process per example: a loaded 2-core machine needs far more than the default 5 s.
  it("writes JSONL the trainer reads, in the task's format, and scores its own references as correct", { timeout: 60_000 }, async () => {
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

describe("test split sizes", () => {
  it("are as the paper needs: math and nlu 300, safety 120 half harmful, code above 100", () => {
    expect(TASKS.math.defaultTestSize).toBeGreaterThanOrEqual(300);
    expect(TASKS.nlu.defaultTestSize).toBeGreaterThanOrEqual(300);
    expect(TASKS.code.defaultTestSize).toBeGreaterThanOrEqual(100);
    const safety = TASKS.safety.generate(0, { train: 40, dev: 40, test: TASKS.safety.defaultTestSize });
    expect(safety.test).toHaveLength(120);
    for (const split of [safety.train, safety.dev, safety.test]) {
      expect(split.filter((e) => e.group === "harmful")).toHaveLength(split.length / 2);
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
