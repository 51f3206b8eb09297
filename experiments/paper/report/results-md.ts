import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import type { PaperResults } from "../results-schema.js";
import { paperCharts, renderChartPng } from "./charts.js";
import { NOT_MEASURED, bytes, count, duration, fixedStat, pct, pctStat, points } from "./format.js";
import { markdownTable } from "./markdown.js";
import {
  ADAPTER_METHODS,
  CLAIM_THRESHOLDS,
  MERGE_LABELS,
  MERGE_METHODS,
  METHOD_LABELS,
  METHODS,
  summarize,
  type PaperSummary,
} from "./summary.js";

/** docs/results.md, rendered from docs/results.json (PaperResults). */

export interface ResultsMarkdownOptions {
  /** Folder the chart PNGs are written to (created if missing). */
  readonly chartDir: string;
  /** How the markdown links a chart: `${chartLinkPrefix}/${name}.png` (e.g. "results" from docs/results.md). */
  readonly chartLinkPrefix: string;
}

export const SECTION_TITLES = {
  produced: "How these numbers were produced",
  base: "Base model without adapters",
  single: "Table 1: single-task adapters",
  merge: "Table 2: merging adapters",
  continual: "Table 3: continual learning (safety, then a task)",
  interference: "Interference and merge loss",
  claims: "The paper's claims, measured",
} as const;

function chartLink(prefix: string, name: string): string {
  const p = prefix.replace(/\/+$/, "");
  return p === "" ? `${name}.png` : `${p}/${name}.png`;
}

function producedSection(results: PaperResults): string {
  const c = results.config;
  const methods = METHODS.filter((m) => c.steps[m] !== undefined || c.learningRates[m] !== undefined);
  const testSizes = Object.entries(c.testSize)
    .map(([task, n]) => `${task} ${n}`)
    .join(", ");
  const lines = [
    `- Command: \`npm run paper\` (results in docs/results.json; this page is rendered from it).`,
    `- Completed: ${results.generatedAt}; wall time of all runs: ${duration(results.runtimeSeconds)}.`,
    `- Base model: \`${c.base}\` (${count(c.baseParams)} parameters).`,
    `- Seeds: ${c.seeds.length > 0 ? c.seeds.join(", ") : NOT_MEASURED} ` +
      `(${c.seeds.length} per configuration; ± is the sample standard deviation over seeds)` +
      (c.continualSeeds ? `; continual learning: seed ${c.continualSeeds.join(", ")} only.` : "."),
    `- Training examples per task: ${count(c.trainSize)}; test examples: ${testSizes || NOT_MEASURED}.`,
    `- Adapters: rank ${c.rank}; LoRI sparsity ${pct(c.sparsity)} of B masked out (LoRI-S).`,
    `- Merge weight of each of the four adapters (cat and linear): ${ADAPTER_METHODS.map((m) => `${METHOD_LABELS[m]} ${c.mergeWeights[m] ?? NOT_MEASURED}`).join(", ")}.`,
  ];
  const table = markdownTable(
    ["Method", "Optimizer steps", "Learning rate"],
    methods.map((m) => [METHOD_LABELS[m], count(c.steps[m]), c.learningRates[m] === undefined ? NOT_MEASURED : String(c.learningRates[m])]),
  );
  return [lines.join("\n"), table].join("\n\n");
}

function baseSection(summary: PaperSummary): string {
  if (summary.base.length === 0) return "_Not measured._";
  return markdownTable(
    ["Task", "Accuracy", "Test examples", "Groups"],
    summary.base.map((b) => [
      b.task,
      pct(b.accuracy),
      count(b.examples),
      b.groups
        ? Object.entries(b.groups)
            .map(([g, v]) => `${g} ${pct(v)}`)
            .join(", ")
        : "",
    ]),
    ["left", "right", "right", "left"],
  );
}

function singleSection(summary: PaperSummary, tasks: readonly TaskId[]): string {
  const rows = summary.single.map((r) => [
    METHOD_LABELS[r.method],
    ...tasks.map((t) => pctStat(r.accuracy[t])),
    pct(r.meanAccuracy),
    count(r.trainableParams?.mean),
    bytes(r.bytes?.mean),
    duration(r.trainSeconds?.mean),
  ]);
  const notRun = summary.single.filter((r) => r.runs === 0).map((r) => METHOD_LABELS[r.method]);
  return [
    markdownTable(["Method", ...tasks, "Mean over tasks", "Trainable params", "Size on disk", "Train time (mean)"], rows),
    `Accuracy: mean ± std over seeds. Trainable params: LoRI-S counts the unmasked B entries; full fine-tuning every weight. ` +
      `Size: the stored adapter (full: the model file).` +
      (notRun.length > 0 ? ` Not run: ${notRun.join(", ")}.` : ""),
  ].join("\n\n");
}

function mergeSection(summary: PaperSummary, tasks: readonly TaskId[]): string {
  const measured = summary.merges.filter((r) => r.runs > 0);
  if (measured.length === 0) return "_Not measured._";
  const rows = summary.merges.map((r) => [
    METHOD_LABELS[r.method],
    MERGE_LABELS[r.merge],
    ...tasks.map((t) => {
      const cell = r.tasks[t];
      if (!cell?.accuracy) return NOT_MEASURED;
      return `${pctStat(cell.accuracy)} (${cell.relative ? pct(cell.relative.mean) : NOT_MEASURED})`;
    }),
    `${pct(r.meanAccuracy)} (${pct(r.meanRelative)})`,
  ]);
  return [
    markdownTable(["Method", "Merge", ...tasks, "Mean over tasks"], rows, ["left", "left"]),
    `Each cell: accuracy of the merged adapter, mean ± std over seeds, and in parentheses its share of the ` +
      `single-task adapter's accuracy of the same method, task and seed (mean over seeds). "concat" and "linear" ` +
      `use the paper's merge weights (above); "concat, weight 1" merges the four adapters at full weight, which is ` +
      `exactly what serving them stacked per request computes: the gap between the two separates the loss from ` +
      `down-weighting each adapter from the loss from interference between them.`,
  ].join("\n\n");
}

function continualSection(summary: PaperSummary): string {
  if (summary.continual.length === 0) return "_Not measured._";
  const rows = summary.continual.map((r) => [
    METHOD_LABELS[r.method],
    r.task === "all" ? "**all tasks**" : r.task,
    pctStat(r.safetyBefore),
    pctStat(r.safetyAfter),
    pct(r.retention?.mean),
    pctStat(r.taskAccuracy),
  ]);
  return [
    markdownTable(["Method", "Task trained second", "Refusal before", "Refusal after", "Refusal kept", "Task accuracy"], rows, [
      "left",
      "left",
    ]),
    `Refusal: the harmful-request refusal rate of the safety adapter before, and of the adapter continued on the ` +
      `task after. Kept: after / before, mean over runs.`,
  ].join("\n\n");
}

function interferenceSection(summary: PaperSummary): string {
  if (summary.interference.length === 0) return "_Not measured._";
  const rows = summary.interference.map((r) => [
    METHOD_LABELS[r.method],
    r.pair ? `${r.pair[0]} + ${r.pair[1]}` : "**all pairs**",
    r.maskJaccard ? fixedStat(r.maskJaccard, 3) : "— (dense)",
    fixedStat(r.meanAngleDeg, 1, "°"),
    fixedStat(r.crossTermRatio, 3),
    ...MERGE_METHODS.map((m) => pct(r.mergeLoss[m])),
  ]);
  return [
    markdownTable(
      [
        "Method",
        "Pair",
        "Mask Jaccard",
        "Mean principal angle",
        "Cross-term ratio",
        ...MERGE_METHODS.map((m) => `Merge loss (${MERGE_LABELS[m]})`),
      ],
      rows,
      ["left", "left"],
    ),
    `Mask Jaccard: overlap of the two B masks (dense adapters have none). Principal angle between the A subspaces ` +
      `(90° = orthogonal). Cross-term ratio: ‖cross terms of a linear merge‖ / ‖exact sum‖. Merge loss: ` +
      `1 − merged / single-task accuracy of the same method, mean over the pair's tasks (all pairs: over every merged task).`,
  ].join("\n\n");
}

function claimsSection(summary: PaperSummary): string {
  const verdictText = (v: PaperSummary["verdicts"][number]) =>
    v.status === "holds" ? "✅ holds" : v.status === "fails" ? "❌ does not hold" : "⚠️ not measured";
  return [
    markdownTable(
      ["Claim", "Measured", "Verdict"],
      summary.verdicts.map((v) => [v.claim, v.measured, verdictText(v)]),
      ["left", "left", "left"],
    ),
    `Thresholds: LoRI-S − LoRA ≥ ${points(CLAIM_THRESHOLDS.loriSVsLoraPoints)} points on every task; cat-merged LoRI-D and ` +
      `LoRI-S ≥ ${pct(CLAIM_THRESHOLDS.mergeKeep)} of the single-task score on every task and a higher mean merged ` +
      `accuracy than LoRA cat; LoRI-S keeps ≥ ${pct(CLAIM_THRESHOLDS.safetyKeep)} of its refusal rate and LoRA less ` +
      `than that. A claim is "not measured" when a method or task it needs was not run.`,
  ].join("\n\n");
}

/** Renders the charts into `options.chartDir` and returns the markdown of docs/results.md. */
export async function renderResultsMarkdown(results: PaperResults, options: ResultsMarkdownOptions): Promise<string> {
  const summary = summarize(results);
  const tasks = summary.tasks;
  const charts = new Map<string, string>();
  for (const chart of paperCharts(results)) {
    if (!chart.spec) {
      charts.set(chart.name, `_Chart not drawn: ${chart.title.toLowerCase()} not measured._`);
      continue;
    }
    await renderChartPng(chart.spec, join(options.chartDir, `${chart.name}.png`));
    charts.set(chart.name, `![${chart.title}](${chartLink(options.chartLinkPrefix, chart.name)})`);
  }

  const parts: string[] = [
    "# LoRI paper reproduction: results",
    "<!-- Generated from docs/results.json by experiments/paper/report; do not edit by hand. -->",
  ];
  if (results.config.smoke) {
    parts.push("> **Smoke run** (tiny shapes, a few steps): these numbers check the pipeline and mean nothing about the paper.");
  }
  parts.push(
    `LoRI (LoRA with a frozen random A and a sparse B) against LoRA and full fine-tuning on the four synthetic tasks ` +
      `of docs/tasks.md: single-task adapters, merged adapters and continual learning.`,
    `## ${SECTION_TITLES.produced}`,
    producedSection(results),
    `## ${SECTION_TITLES.base}`,
    baseSection(summary),
    `## ${SECTION_TITLES.single}`,
    singleSection(
      summary,
      tasks.filter((t) => summary.single.some((r) => r.accuracy[t])),
    ),
    charts.get("single-task")!,
    `## ${SECTION_TITLES.merge}`,
    mergeSection(
      summary,
      tasks.filter((t) => summary.merges.some((r) => r.tasks[t])),
    ),
    charts.get("merging")!,
    `## ${SECTION_TITLES.continual}`,
    continualSection(summary),
    charts.get("continual")!,
    `## ${SECTION_TITLES.interference}`,
    interferenceSection(summary),
    `## ${SECTION_TITLES.claims}`,
    claimsSection(summary),
  );
  return `${parts.join("\n\n")}\n`;
}
