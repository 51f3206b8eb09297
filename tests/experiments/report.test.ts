import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { mergeChart, renderChartPng, singleTaskChart } from "../../experiments/paper/report/charts.js";
import { markdownTable } from "../../experiments/paper/report/markdown.js";
import { SECTION_TITLES, renderResultsMarkdown } from "../../experiments/paper/report/results-md.js";
import {
  claimVerdicts,
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

function verdictOf(results: PaperResults, index: number) {
  return claimVerdicts(results)[index]!;
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

describe("paper claim verdicts", () => {
  it("hold on the fixture, with the numbers in the text", () => {
    const [close, merge, continual] = claimVerdicts(fixtureResults());
    expect(close).toMatchObject({ holds: true, status: "holds" });
    // LoRI-S − LoRA: math 54 − 55, code 43 − 45 (exactly the −2 bound), nlu 0, safety 0
    expect(close!.measured).toContain("math −1.0");
    expect(close!.measured).toContain("code −2.0");
    expect(close!.measured).toContain("worst code −2.0");
    expect(merge).toMatchObject({ holds: true, status: "holds" });
    expect(merge!.measured).toContain("LoRI-D cat: min 92.5 %");
    // 0.578125 vs 0.4525 (45.25 sits on a rounding edge)
    expect(merge!.measured).toMatch(/mean accuracy 57\.8 % vs LoRA cat 45\.[23] %/);
    expect(continual).toMatchObject({ holds: true, status: "holds" });
    expect(continual!.measured).toContain("LoRI-S keeps 93.8 %");
    expect(continual!.measured).toContain("LoRA keeps 62.5 %");
  });

  it("LoRI-S vs LoRA flips when LoRI-S trails by more than 2 points on one task", () => {
    const r = mutableFixture();
    // LoRI-S code seed 1: 0.39 → 0.37, mean 0.42 vs LoRA 0.45: −3.0 points
    r.single.find((s: any) => s.method === "lori-s" && s.task === "code" && s.seed === 1).score.accuracy = 0.37;
    const v = verdictOf(r, 0);
    expect(v).toMatchObject({ holds: false, status: "fails" });
    expect(v.measured).toContain("worst code −3.0");
  });

  it("merging flips when a LoRI task keeps under 90 %, and when LoRA merges better", () => {
    const low = mutableFixture();
    // LoRI-D cat code seed 1: 0.36 → 0.30, relative (0.75 + 0.95) / 2 = 0.85
    low.merges
      .find((m: any) => m.method === "lori-d" && m.merge === "cat" && m.seed === 1)
      .scores.find((s: any) => s.task === "code").accuracy = 0.3;
    expect(verdictOf(low, 1)).toMatchObject({ holds: false, status: "fails" });
    expect(verdictOf(low, 1).measured).toContain("LoRI-D cat: min 85.0 % of single-task (code)");

    const strongLora = mutableFixture();
    for (const m of strongLora.merges.filter((m: any) => m.method === "lora" && m.merge === "cat")) {
      for (const s of m.scores) s.accuracy = 0.9;
    }
    expect(verdictOf(strongLora, 1)).toMatchObject({ holds: false, status: "fails" });
  });

  it("continual learning flips when LoRA keeps its refusals too, or LoRI-S loses them", () => {
    const keeps = mutableFixture();
    for (const c of keeps.continual.filter((c: any) => c.method === "lora")) c.safetyAfter = c.safetyBefore;
    expect(verdictOf(keeps, 2)).toMatchObject({ holds: false, status: "fails" });
    const loses = mutableFixture();
    for (const c of loses.continual.filter((c: any) => c.method === "lori-s")) c.safetyAfter = c.safetyBefore * 0.8;
    expect(verdictOf(loses, 2)).toMatchObject({ holds: false, status: "fails" });
    expect(verdictOf(loses, 2).measured).toContain("LoRI-S keeps 80.0 %");
  });

  it("say 'not measured' instead of throwing when methods were not run", () => {
    const r = mutableFixture();
    r.single = r.single.filter((s: any) => s.method !== "lori-s");
    r.merges = r.merges.filter((m: any) => m.method !== "lori-d");
    r.continual = r.continual.filter((c: any) => c.method !== "lora");
    const verdicts = claimVerdicts(r);
    for (const v of verdicts) {
      expect(v.status).toBe("not measured");
      expect(v.holds).toBe(false);
      expect(v.measured.startsWith("not measured")).toBe(true);
    }
    expect(verdicts[0]!.measured).toContain("LoRI-S");
    expect(verdicts[1]!.measured).toContain("LoRI-D cat: not measured");
    expect(verdicts[2]!.measured).toContain("LoRA keeps not measured");

    const empty: PaperResults = { ...fixtureResults(), baseScores: [], single: [], merges: [], continual: [], interference: [] };
    expect(claimVerdicts(empty).map((v) => v.status)).toEqual(["not measured", "not measured", "not measured"]);
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
      "| Method | Pair | Mask Jaccard | Mean principal angle | Cross-term ratio | Merge loss (concat) | Merge loss (linear) |",
      "| Claim | Measured | Verdict |",
    ]) {
      expect(md).toContain(header);
    }
    // one row of each table, formatted: accuracy in percent with one decimal
    expect(md).toContain("| LoRA | 55.0 ± 7.1 % | 45.0 ± 7.1 % | 65.0 ± 7.1 % | 85.0 ± 7.1 % | 62.5 % | 40,000 | 160.0 KiB |");
    expect(md).toContain("| LoRI-D | concat | 50.4 ± 6.7 % (95.0 %) | 38.9 ± 4.1 % (92.5 %) |");
    expect(md).toContain("| LoRA | **all tasks** | 85.0 ± 5.8 % | 52.8 ± 6.2 % | 62.5 % | 47.5 ± 9.6 % |");
    expect(md).toContain("| LoRA | math + code | — (dense) | 81.0 ± 1.4 ° | 0.350 ± 0.071 | 40.0 % | 20.0 % |");
    expect(md).toContain("| safety | 50.0 % | 100 | harmful 20.0 %, benign 80.0 % |");
    expect(md.match(/✅ holds/g)).toHaveLength(3);

    for (const name of ["single-task", "merging", "continual"]) {
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
    expect((await readdir(chartDir)).sort()).toEqual(["continual.png", "merging.png", "single-task.png"]);
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
