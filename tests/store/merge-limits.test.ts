import { describe, expect, it } from "vitest";
import { makeAdapter } from "../../src/lora/adapter.js";
import { LoraError } from "../../src/lora/errors.js";
import { MAX_ABS_WEIGHT, MAX_MERGE_INPUTS, mergeCat, mergeLinear } from "../../src/lora/merge.js";
import { adapterFieldSchema } from "../../src/protocol/adapter-field.js";
import { mergeAdaptersSchema } from "../../src/protocol/adapter-schemas.js";
import { randomModule, rng } from "../lora/helpers.js";

/** Issue 10, defect 6: weight 1e308 stored 71,680 Inf values; weight 0, duplicates and 2,000 inputs were accepted. */

const adapter = (seed: number, bScale = 1) => {
  const random = rng(seed);
  const m = randomModule({ random, rank: 2, seed: 7 });
  return makeAdapter([{ ...m, b: m.b.map((x) => x * bScale) }]);
};
const inputs = (weights: number[]) => weights.map((weight, i) => ({ adapter: adapter(i + 1), weight, name: `a${i}` }));

function mergeError(run: () => unknown): LoraError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(LoraError);
    return error as LoraError;
  }
  throw new Error("expected the merge to be refused");
}

describe("merge limits (lora/merge.ts)", () => {
  it("refuses weights that are zero, non-finite or above the bound, for cat and linear alike", () => {
    for (const merge of [mergeCat, mergeLinear]) {
      for (const weight of [0, Number.NaN, Number.POSITIVE_INFINITY, 1e308, -1e308, MAX_ABS_WEIGHT * 1.001]) {
        const error = mergeError(() => merge(inputs([0.5, weight])));
        expect(error.code).toBe("MERGE_INVALID");
        expect(error.message).toMatch(/weight 1/);
      }
    }
    expect(() => mergeCat(inputs([MAX_ABS_WEIGHT, -MAX_ABS_WEIGHT]))).not.toThrow();
  });

  it("refuses more than 16 inputs and the same adapter twice", () => {
    expect(MAX_MERGE_INPUTS).toBe(16);
    expect(() => mergeCat(inputs(Array(16).fill(0.1)))).not.toThrow();
    expect(mergeError(() => mergeCat(inputs(Array(17).fill(0.1)))).message).toMatch(/at most 16/);
    const twice = [
      { adapter: adapter(1), weight: 1, name: "math" },
      { adapter: adapter(2), weight: 1, name: "math" },
    ];
    expect(mergeError(() => mergeCat(twice)).message).toMatch(/'math' is listed twice/);
  });

  it("refuses a merge whose output would hold non-finite values", () => {
    // Seeded A shared: B_out = w * alpha/r * B = 1e3 * 2 * ~1e36, past float32's 3.4e38: Inf in the output.
    const huge = [{ adapter: adapter(1, 1e36), weight: 1e3, name: "x" }];
    expect(mergeError(() => mergeCat(huge)).message).toMatch(/non-finite/);
  });
});

describe("the same limits on the request field and the merge API schema", () => {
  const issues = (
    schema: { safeParse(v: unknown): { success: boolean; error?: { issues: Array<{ path: PropertyKey[]; message: string }> } } },
    value: unknown,
  ) => schema.safeParse(value).error?.issues.map((i) => ({ path: i.path.join("."), message: i.message })) ?? [];

  it("request `adapter`: |w| <= 1e3, non-zero, finite, at most 16 entries", () => {
    expect(issues(adapterFieldSchema, [{ name: "a", weight: 1e308 }])).toEqual([
      { path: "0.weight", message: expect.stringMatching(/between -1000 and 1000/) },
    ]);
    expect(issues(adapterFieldSchema, [{ name: "a", weight: 0 }])[0]?.message).toMatch(/non-zero/);
    expect(issues(adapterFieldSchema, [{ name: "a", weight: -1000 }])).toEqual([]);
    expect(
      issues(
        adapterFieldSchema,
        Array.from({ length: 17 }, (_, i) => `a${i}`),
      )[0]?.message,
    ).toMatch(/at most 16/);
  });

  it("POST /adapters/merge: weight bounds, 16 inputs, duplicates, each naming its field", () => {
    const body = (adapters: unknown[]) => ({ method: "cat", name: "out", adapters });
    expect(issues(mergeAdaptersSchema, body([{ name: "a", weight: 1e308 }]))).toEqual([
      { path: "adapters.0.weight", message: expect.stringMatching(/between/) },
    ]);
    expect(issues(mergeAdaptersSchema, body([{ name: "a", weight: 0 }]))[0]?.path).toBe("adapters.0.weight");
    expect(issues(mergeAdaptersSchema, body(Array.from({ length: 2000 }, (_, i) => ({ name: `a${i}` }))))[0]).toEqual({
      path: "adapters",
      message: expect.stringMatching(/at most 16/),
    });
    expect(issues(mergeAdaptersSchema, body([{ name: "a" }, { name: "b" }, { name: "a" }]))[0]).toEqual({
      path: "adapters.2.name",
      message: expect.stringMatching(/listed twice/),
    });
    expect(
      issues(
        mergeAdaptersSchema,
        body([
          { name: "a", weight: 0.5 },
          { name: "b", weight: -2 },
        ]),
      ),
    ).toEqual([]);
  });
});
