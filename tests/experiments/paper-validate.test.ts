import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../experiments/paper/config.js";
import { checkResults } from "../../experiments/paper/validate.js";
import { mutableFixture } from "./report-fixture.js";

describe("checkResults on the sweep", () => {
  it("accepts the fixture and the full config's grids (4 values, at least 30x)", () => {
    expect(checkResults(mutableFixture()).filter((p) => p.startsWith("sweep") || p.includes("dev-best"))).toEqual([]);
    for (const grid of Object.values(resolveConfig("full").sweep.grid)) {
      expect(grid.length).toBeGreaterThanOrEqual(4);
      expect(Math.max(...grid) / Math.min(...grid)).toBeGreaterThanOrEqual(30 - 1e-9);
    }
  });

  it("flags a short or narrow grid, a best lr outside it, and a run not at the dev-best lr", () => {
    const r = mutableFixture();
    r.sweeps[0].grid = [1e-3, 3e-3, 1e-2];
    r.sweeps[0].bestLr = 5e-3;
    r.single.find((s: any) => s.method === "lora").lr = 1e-2;
    const problems = checkResults(r);
    expect(problems).toContain("sweep lora: only 3 learning rates (at least 4)");
    expect(problems).toContain("sweep lora: the grid spans 10.0x (at least 30x)");
    expect(problems).toContain("sweep lora: best lr 0.005 is not in its grid");
    expect(problems.some((p) => /^single lora math seed 1: lr 0.01 is not the dev-best 0.005$/.test(p))).toBe(true);
  });
});
