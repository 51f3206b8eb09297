import { describe, expect, it } from "vitest";
import { interleaveDev } from "../../experiments/paper/dev-data.js";
import { splitValidation } from "../../src/train/training-data.js";

describe("interleaveDev", () => {
  it.each([1, 101, 4242, 2 ** 31 + 5])("makes the trainer's validation split exactly the dev records (seed %i)", (seed) => {
    const train = Array.from({ length: 350 }, (_, i) => `train-${i}`);
    const dev = Array.from({ length: 60 }, (_, i) => `dev-${i}`);
    const { records, valFraction } = interleaveDev(train, dev, seed);
    // what the trainer does with the file (src/train/train-common.ts: splitValidation on the records, --seed)
    const split = splitValidation(records, valFraction, seed);
    expect(split.validation).toEqual(dev);
    expect(split.train).toEqual(train);
  });

  it("refuses an empty split", () => {
    expect(() => interleaveDev(["a"], [], 1)).toThrow(/needs train and dev/);
  });
});
