import { describe, expect, it } from "vitest";
import { extendingSweep, ladderStep, pickBest } from "../../experiments/paper/experiments/sweep.js";
import type { SweepPoint } from "../../experiments/paper/results-schema.js";

const point = (lr: number, task: "math" | "safety", devAccuracy: number, devLoss: number | null = 1): SweepPoint => ({
  method: "lora",
  task,
  lr,
  devAccuracy,
  devLoss,
  finalLoss: 1,
  log: [],
  secondsPerStep: null,
});

/** A dev accuracy that peaks at `peak` (log scale), the same on both tasks. */
const peaked = (peak: number) => async (lr: number) => {
  const acc = Math.max(0, 0.9 - 0.2 * Math.abs(Math.log10(lr / peak)));
  return [point(lr, "math", acc), point(lr, "safety", acc)];
};

describe("the learning-rate ladder", () => {
  it("steps by half-decades on 1-3-10", () => {
    expect([ladderStep(1e-3, "down"), ladderStep(3e-3, "down"), ladderStep(1e-3, "up"), ladderStep(3e-3, "up")]).toEqual([
      3e-4, 1e-3, 3e-3, 1e-2,
    ]);
    expect(ladderStep(3e-5, "down")).toBe(1e-5);
  });
});

describe("pickBest", () => {
  it("takes the best mean dev accuracy over tasks, then the lower dev loss, then the smaller lr", () => {
    expect(
      pickBest(
        [point(1e-3, "math", 0.5), point(1e-3, "safety", 0.7), point(3e-3, "math", 0.7), point(3e-3, "safety", 0.4)],
        ["math", "safety"],
      ),
    ).toBe(1e-3);
    expect(pickBest([point(1e-3, "math", 0.5, 1.2), point(3e-3, "math", 0.5, 0.8)], ["math"])).toBe(3e-3);
    expect(pickBest([point(1e-3, "math", 0.5, null), point(3e-3, "math", 0.5, null)], ["math"])).toBe(1e-3);
    // an lr not scored on every task is not a candidate
    expect(pickBest([point(1e-3, "math", 0.9), point(3e-3, "math", 0.5), point(3e-3, "safety", 0.5)], ["math", "safety"])).toBe(3e-3);
  });
});

describe("extendingSweep", () => {
  const grid = [1e-4, 3e-4, 1e-3, 3e-3];

  it("keeps the grid when the best is inside it", async () => {
    const r = await extendingSweep(grid, ["math", "safety"], 2, peaked(3e-4));
    expect(r).toMatchObject({ grid, bestLr: 3e-4, extensions: 0, atEdge: false });
    expect(r.points).toHaveLength(8);
  });

  it("grows past the upper edge until the best is inside", async () => {
    const r = await extendingSweep(grid, ["math", "safety"], 3, peaked(1e-2));
    expect(r.grid).toEqual([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]);
    expect(r).toMatchObject({ bestLr: 1e-2, extensions: 2, atEdge: false });
  });

  it("grows past the lower edge, and says so when the allowed extensions run out at an edge", async () => {
    const r = await extendingSweep(grid, ["math"], 1, async (lr) => [point(lr, "math", 1 - lr)]);
    expect(r.grid).toEqual([3e-5, ...grid]);
    expect(r).toMatchObject({ bestLr: 3e-5, extensions: 1, atEdge: true });
  });
});
