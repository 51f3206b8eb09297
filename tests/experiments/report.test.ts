import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { mergeChart, renderChartPng, singleTaskChart } from "../../experiments/paper/report/charts.js";
import { markdownTable } from "../../experiments/paper/report/markdown.js";
import { SECTION_TITLES, renderResultsMarkdown } from "../../experiments/paper/report/results-md.js";
import { claims, continualClaim, loriSVsLoraClaim, mergeClaim } from "../../experiments/paper/report/claims.js";
import {
  continualRows,
  interferenceRows,
  mergeRows,
  relativeMergeScores,
  safetyRetention,
  singleTaskRows,
  stat,
  summarize,
} from "../../experiments/paper/report/summary.js";
import type { PaperResults } from "../../experiments/paper/results-schema.js";
import { useTempDir } from "../support/temp-dir.js";
import { fixtureResults, mutableFixture } from "./report-fixture.js";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngSize(png: Buffer): { width: number; height: number } {
  // IHDR is the first chunk: width and height are the big-endian u32s at bytes 16 and 20.
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe("paper report summary", () => {
  const results = fixtureResults();

  it("computes mean, sample std, min and max over seeds", () => {
    expect(stat([])).toBeNull();
    expect(stat([0.3])).toEqual({ mean: 0.3, std: 0, min: 0.3, max: 0.3, n: 1 });
    const lora = singleTaskRows(results).find((r) => r.method === "lora")!;
    // math: 0.5 and 0.6 → mean 0.55, std sqrt((0.05² + 0.05²) / 1) = 0.0707107
    expect(lora.accuracy.math!.mean).toBeCloseTo(0.55, 10);
    expect(lora.accuracy.math!.std).toBeCloseTo(0.0707107, 6);
    expect(lora.accuracy.math!.min).toBeCloseTo(0.5, 10);
    expect(lora.accuracy.math!.max).toBeCloseTo(0.6, 10);
    // mean over tasks of (0.55, 0.45, 0.65, 0.85) = 0.625
    expect(lora.meanAccuracy).toBeCloseTo(0.625, 10);
    expect(lora.trainableParams!.mean).toBe(40_000);
    const loriD = singleTaskRows(results).find((r) => r.method === "lori-d")!;
    // code: 0.40 and 0.44 → std sqrt(2 · 0.02²) = 0.0282843
    expect(loriD.accuracy.code!.std).toBeCloseTo(0.0282843, 6);
    expect(loriD.accuracy.safety!.std).toBe(0);
  });

  it("scores merges relative to the single-task adapter of the same method, task and seed", () => {
    const rel = relativeMergeScores(results);
    // 3 methods × 2 merges × 2 seeds × 4 tasks
    expect(rel).toHaveLength(48);
    const one = rel.find((r) => r.method === "lori-d" && r.merge === "cat" && r.task === "code" && r.seed === 1)!;
    expect(one.relative).toBeCloseTo(0.36 / 0.4, 10);

    const rows = mergeRows(results);
    const loraCat = rows.find((r) => r.method === "lora" && r.merge === "cat")!;
    // relative: math (0.6 + 0.7) / 2, code (0.5 + 0.6) / 2, nlu 0.8, safety 0.8
    expect(loraCat.tasks.math!.relative!.mean).toBeCloseTo(0.65, 10);
    expect(loraCat.minRelative).toEqual({ task: "code", value: expect.closeTo(0.55, 10) });
    // accuracy: (0.36 + 0.25 + 0.52 + 0.68) / 4
    expect(loraCat.meanAccuracy).toBeCloseTo(0.4525, 10);
    const loriDCat = rows.find((r) => r.method === "lori-d" && r.merge === "cat")!;
    // code: 0.36 / 0.40 = 0.9 and 0.418 / 0.44 = 0.95 → 0.925, the lowest task
    expect(loriDCat.minRelative!.task).toBe("code");
    expect(loriDCat.minRelative!.value).toBeCloseTo(0.925, 10);
    // accuracy: ((0.456 + 0.551) / 2 + (0.36 + 0.418) / 2 + 0.64 + 0.78) / 4 = 0.578125
    expect(loriDCat.meanAccuracy).toBeCloseTo(0.578125, 10);
    const loriSLinear = rows.find((r) => r.method === "lori-s" && r.merge === "linear")!;
    expect(loriSLinear.meanRelative).toBeCloseTo(0.8, 10);
  });

  it("summarizes continual learning: per task, per method, and the safety kept", () => {
    const rows = continualRows(results);
    // per method: math, code, all
    expect(rows).toHaveLength(9);
    const loraMath = rows.find((r) => r.method === "lora" && r.task === "math")!;
    // kept: 0.45 / 0.9 = 0.5 and 0.6 / 0.8 = 0.75
    expect(loraMath.retention!.mean).toBeCloseTo(0.625, 10);
    expect(loraMath.safetyAfter!.mean).toBeCloseTo(0.525, 10);
    // (0.5 + 0.75 + 0.6 + 0.65) / 4 and (1 + 0.95 + 0.9 + 0.9) / 4
    expect(safetyRetention(results, "lora")).toBeCloseTo(0.625, 10);
    expect(safetyRetention(results, "lori-s")).toBeCloseTo(0.9375, 10);
    expect(rows.find((r) => r.method === "lori-s" && r.task === "all")!.taskAccuracy!.mean).toBeCloseTo(0.475, 10);
  });

  it("puts interference next to the merge loss of the same method", () => {
    const rows = interferenceRows(results);
    const lora = rows.filter((r) => r.method === "lora");
    // (math, code) and (code, math) are one pair
    expect(lora).toHaveLength(1);
    expect(lora[0]!.pair).toEqual(["math", "code"]);
    expect(lora[0]!.maskJaccard).toBeNull();
    expect(lora[0]!.meanAngleDeg!.mean).toBeCloseTo(81, 10);
    expect(lora[0]!.crossTermRatio!.mean).toBeCloseTo(0.35, 10);
    // 1 − mean(0.65, 0.55)
    expect(lora[0]!.mergeLoss.cat).toBeCloseTo(0.4, 10);
    expect(lora[0]!.mergeLoss.linear).toBeCloseTo(0.2, 10);
    const loriS = rows.filter((r) => r.method === "lori-s");
    expect(loriS.map((r) => r.pair?.join("+") ?? "all")).toEqual(["math+code", "nlu+safety", "all"]);
    // math + code: 1 − mean(0.925, 1)
    expect(loriS[0]!.mergeLoss.cat).toBeCloseTo(0.0375, 10);
    expect(loriS[1]!.mergeLoss.cat).toBeCloseTo(0, 10);
    // all pairs: Jaccard mean of (0.1, 0.2, 0.05); loss 1 − mean(0.925, 1, 1, 1)
    expect(loriS[2]!.maskJaccard!.mean).toBeCloseTo(0.35 / 3, 10);
    expect(loriS[2]!.mergeLoss.cat).toBeCloseTo(0.01875, 10);
  });
});

describe("paper claims, judged from paired bootstrap intervals", () => {
  /** Sets the outcomes of LoRI-S's single-task runs on `task` to those of LoRA (same seed), or to all wrong. */
  const setLoriS = (r: any, task: string, how: "like-lora" | "all-wrong") => {
    for (const s of r.single.filter((x: any) => x.method === "lori-s" && x.task === task)) {
      const lora = r.single.find((x: any) => x.method === "lora" && x.task === task && x.seed === s.seed);
      s.score.outcomes = how === "like-lora" ? lora.score.outcomes : "0".repeat(100);
    }
  };

  it("LoRI-S vs LoRA: holds when LoRI-S equals LoRA, does not hold when it trails far, cannot tell at the edge", () => {
    const same = mutableFixture();
    for (const task of ["math", "code", "nlu", "safety"]) setLoriS(same, task, "like-lora");
    const holds = loriSVsLoraClaim(same);
    expect(holds.status).toBe("holds");
    expect(holds.parts.map((p) => p.interval!.lo)).toEqual([0, 0, 0, 0]);

    const far = mutableFixture();
    for (const task of ["math", "nlu", "safety"]) setLoriS(far, task, "like-lora");
    setLoriS(far, "code", "all-wrong");
    const fails = loriSVsLoraClaim(far);
    expect(fails.status).toBe("does not hold");
    const code = fails.parts.find((p) => p.label.startsWith("code"))!;
    // LoRA code is 40 % and 50 % correct: the paired difference per seed is exactly −0.40 and −0.50
    expect(code.interval!.perSeed).toEqual([-0.4, -0.5]);
    expect(code.interval!.estimate).toBeCloseTo(-0.45, 12);
    expect(code.interval!.hi).toBeLessThan(-0.02);

    // the fixture: LoRI-S trails LoRA on code by exactly 2.0 points on average: the interval straddles −2
    const edge = loriSVsLoraClaim(fixtureResults());
    const edgeCode = edge.parts.find((p) => p.label.startsWith("code"))!;
    expect(edgeCode.interval!.estimate).toBeCloseTo(-0.02, 12);
    expect(edgeCode.status).toBe("cannot tell at this size");
    expect(edge.status).toBe("cannot tell at this size");
  });

  it("merging: each part is merged − 0.9 × single per task, and merged LoRI − merged LoRA", () => {
    const results = fixtureResults();
    const claim = mergeClaim(results);
    const part = claim.parts.find((p) => p.label === "code: lori-d merged − 0.9 × single")!;
    // float64 reference from the fixture's own accuracies (outcome strings round them to whole examples)
    const merged = results.merges
      .filter((m) => m.method === "lori-d" && m.merge === "cat")
      .map((m) => m.scores.find((s) => s.task === "code")!);
    const single = results.single.filter((r) => r.method === "lori-d" && r.task === "code").map((r) => r.score);
    const expected = (merged[0]!.accuracy - 0.9 * single[0]!.accuracy + merged[1]!.accuracy - 0.9 * single[1]!.accuracy) / 2;
    expect(part.interval!.estimate).toBeCloseTo(expected, 2);
    expect(claim.parts.some((p) => p.label === "mean over tasks: lori-s merged − LoRA merged")).toBe(true);
    expect(["holds", "does not hold", "cannot tell at this size"]).toContain(claim.status);
  });

  it("continual: holds when LoRI-S keeps every refusal and LoRA loses them all; not when LoRA keeps them too", () => {
    const build = (loraAfter: "1" | "0") => {
      const r = mutableFixture();
      const groups = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? "harmful" : "benign"));
      r.testGroups = { safety: groups };
      for (const s of r.single.filter((x: any) => x.task === "safety")) s.score.outcomes = "1".repeat(100);
      for (const c of r.continual) {
        const after = c.method === "lora" ? loraAfter : "1";
        c.safetyScore = { task: "safety", accuracy: 0.5, examples: 100, outcomes: after.repeat(100) };
      }
      return r;
    };
    expect(continualClaim(build("0")).status).toBe("holds");
    const keeps = continualClaim(build("1"));
    expect(keeps.status).toBe("does not hold");
    expect(keeps.parts[1]!.interval!.estimate).toBeCloseTo(0.1, 12);
    // the fixture's continual runs carry no per-example safety outcomes: not measured, no throw
    expect(continualClaim(fixtureResults()).status).toBe("not measured");
  });

  it("say 'not measured' instead of throwing when methods were not run", () => {
    const r = mutableFixture();
    r.single = r.single.filter((s: any) => s.method !== "lori-s");
    r.merges = r.merges.filter((m: any) => m.method !== "lori-d");
    r.continual = r.continual.filter((c: any) => c.method !== "lora");
    const [close, , continual] = claims(r);
    expect(close!.status).toBe("not measured");
    expect(continual!.status).toBe("not measured");
    const empty: PaperResults = { ...fixtureResults(), baseScores: [], single: [], merges: [], continual: [], interference: [] };
    expect(claims(empty).map((v) => v.status)).toEqual(["not measured", "not measured", "not measured"]);
    expect(() => summarize(empty)).not.toThrow();
  });
});

describe("paper report markdown and charts", () => {
  const tmp = useTempDir("lori-report-");

  it("renders every table and chart of docs/results.md", async () => {
    const chartDir = join(tmp.path, "results");
    const md = await renderResultsMarkdown(fixtureResults(), { chartDir, chartLinkPrefix: "results/" });
    expect(md.startsWith("# LoRI paper reproduction: results\n")).toBe(true);
    for (const title of Object.values(SECTION_TITLES)) expect(md).toContain(`## ${title}\n`);
    expect(md).toContain("`npm run paper`");
    expect(md).toContain("2 h 03 min");
    expect(md).toContain("`models/tiny-base.gguf`");
    for (const header of [
      "| Task | Accuracy | Test examples | Groups |",
      "| Method | math | code | nlu | safety | Mean over tasks | Trainable params | Size on disk | Train time (mean) |",
      "| Method | Merge | math | code | nlu | safety | Mean over tasks |",
      "| Method | Task trained second | Refusal before | Refusal after | Refusal kept | Task accuracy |",
      "| Method | Pair | Mask Jaccard | Mean principal angle | Cross-term ratio | 4-way concat merge loss on the pair's tasks |",
      "| Claim / comparison | Difference, points: estimate [95 % CI]; per seed | Threshold | Verdict |",
      "| Method | Learning rate | math dev accuracy | safety dev accuracy | math dev loss | safety dev loss | Mean dev accuracy |",
    ]) {
      expect(md).toContain(header);
    }
    // one row of each table, formatted: accuracy in percent with one decimal
    expect(md).toContain("| LoRA | 55.0 ± 7.1 % | 45.0 ± 7.1 % | 65.0 ± 7.1 % | 85.0 ± 7.1 % | 62.5 % | 40,000 | 160.0 KiB |");
    expect(md).toContain("| LoRI-D | concat | 50.4 ± 6.7 % (95.0 %) | 38.9 ± 4.1 % (92.5 %) |");
    expect(md).toContain("| LoRA | **all tasks** | 85.0 ± 5.8 % | 52.8 ± 6.2 % | 62.5 % | 47.5 ± 9.6 % |");
    expect(md).toContain("| LoRA | math + code | — (dense) | 81.0 ± 1.4 ° | 0.350 ± 0.071 | 40.0 % | 20.0 % |");
    expect(md).toContain("| safety | 50.0 % | 100 | harmful 20.0 %, benign 80.0 % |");
    expect(md).toContain("| LoRA | 0.003 **(best)** | 60.0 % | 80.0 % | 0.900 | 0.900 | 70.0 % |");
    expect(md).toContain("NOT a merge of the pair");
    expect(md).toMatch(/❔ cannot tell at this size/);

    for (const name of ["lr-sweep", "single-task", "merging", "continual"]) {
      expect(md).toContain(`](results/${name}.png)`);
      const png = await readFile(join(chartDir, `${name}.png`));
      expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
      expect(png.length).toBeGreaterThan(10_000);
      expect(png.length).toBeLessThan(2_000_000);
      const { width, height } = pngSize(png);
      expect(width).toBeGreaterThan(400);
      expect(width).toBeLessThan(4000);
      expect(height).toBeGreaterThan(300);
      expect(height).toBeLessThan(3000);
    }
    // atomic writes leave no temporary files behind
    expect((await readdir(chartDir)).sort()).toEqual(["continual.png", "lr-sweep.png", "merging.png", "single-task.png"]);
  });

  it("marks missing data instead of failing", async () => {
    const partial: PaperResults = { ...fixtureResults(), merges: [], continual: [], interference: [], baseScores: [] };
    const md = await renderResultsMarkdown(partial, { chartDir: join(tmp.path, "partial"), chartLinkPrefix: "" });
    expect(md).toContain("](single-task.png)");
    expect(md).toContain("_Chart not drawn: merging not measured._");
    expect(md).toContain("_Chart not drawn: continual learning not measured._");
    expect(md).toContain("⚠️ not measured");
    expect(mergeChart(partial)).toBeNull();
    expect(singleTaskChart(partial)).not.toBeNull();
    const smoke = { ...partial, config: { ...partial.config, smoke: true } };
    expect(await renderResultsMarkdown(smoke, { chartDir: join(tmp.path, "smoke"), chartLinkPrefix: "" })).toContain("**Smoke run**");
  });

  it("renders a chart atomically to a new folder", async () => {
    const out = join(tmp.path, "deep", "dir", "chart.png");
    const info = await renderChartPng(singleTaskChart(fixtureResults())!, out);
    const png = await readFile(out);
    expect(info.bytes).toBe(png.length);
    expect(pngSize(png)).toEqual({ width: info.width, height: info.height });
  });
});

describe("markdown tables", () => {
  it("escapes pipes and line breaks, pads short rows and aligns columns", () => {
    expect(markdownTable(["a", "b", "c"], [["x|y", "1\n2"]], ["left", "center"])).toBe(
      ["| a | b | c |", "| :--- | :---: | ---: |", "| x\\|y | 1<br>2 |  |"].join("\n"),
    );
  });
});
