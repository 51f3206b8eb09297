import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import type { PaperResults } from "../results-schema.js";
import { paperCharts, renderChartPng } from "./charts.js";
import {
  BOOTSTRAP,
  claims,
  pairingComparison,
  sharingComparison,
  sharingMergeComparison,
  twoSided,
  type Claim,
  type ComparisonPart,
  type Status,
} from "./claims.js";
import { NOT_MEASURED, bytes, count, duration, fixedStat, pct, pctStat, points } from "./format.js";
import { markdownTable } from "./markdown.js";
import {
  ADAPTER_METHODS,
  MERGE_LABELS,
  MERGE_METHODS,
  METHOD_LABELS,
  METHODS,
  mainResults,
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
  sweep: "Learning-rate sweep on dev",
  single: "Table 1: single-task adapters",
  merge: "Table 2: merging adapters",
  continual: "Table 3: continual learning (safety, then a task)",
  interference: "Interference and merge loss",
  sharing: "Shared A across tasks vs one A per task",
  pairing: "Continual LoRI-S: the mask pairing fix",
  claims: "The paper's claims, measured",
} as const;

function chartLink(prefix: string, name: string): string {
  const p = prefix.replace(/\/+$/, "");
  return p === "" ? `${name}.png` : `${p}/${name}.png`;
}

function producedSection(results: PaperResults): string {
  const c = results.config;
  const tuned = (results.sweeps ?? []).length > 0;
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
    `- Training examples per task: ${count(c.trainSize)}; test examples: ${testSizes || NOT_MEASURED}` +
      (c.devSize
        ? `; dev examples (selection only): ${Object.entries(c.devSize)
            .map(([t, n]) => `${t} ${n}`)
            .join(", ")}.`
        : "."),
    tuned
      ? `- Splits: train, dev and test are disjoint by a hash of the prompt. Learning rates are chosen on dev; the test ` +
        `split is read only by the final runs.`
      : `- **This run predates the dev split, the learning-rate sweep, the strict scoring of benign safety answers and ` +
        `per-example outcomes**: its learning rates are fixed (below), its benign safety half counts any non-refusal ` +
        `as correct, and its claims have no confidence intervals ("not measured" below).`,
    `- Adapters: rank ${c.rank}; LoRI sparsity ${pct(c.sparsity)} of B masked out (LoRI-S).`,
    `- Merge weight of each of the four adapters (cat and linear): ${ADAPTER_METHODS.map((m) => `${METHOD_LABELS[m]} ${c.mergeWeights[m] ?? NOT_MEASURED}`).join(", ")}.`,
  ];
  const table = markdownTable(
    [
      "Method",
      "Optimizer steps",
      // results from before the sweep existed carry fixed, untuned learning rates: say so
      tuned ? "Learning rate (dev-best)" : "Learning rate (fixed, NOT tuned)",
      "Initial sweep grid",
    ],
    methods.map((m) => [
      METHOD_LABELS[m],
      count(c.steps[m]),
      c.learningRates[m] === undefined ? "not swept yet" : String(c.learningRates[m]),
      c.lrGrid?.[m]?.join(", ") ?? "no sweep",
    ]),
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
  // rows of merges that were not run are left out (the seed's baselines run for some methods only)
  const rows = measured.map((r) => [
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
      `down-weighting each adapter from the loss from interference between them. The seed's baselines (TIES, DARE, ` +
      `magnitude pruning, SVD; PEFT's semantics, docs/adapter-format.md) merge LoRA adapters only, as the paper's Table 3 ` +
      `applies them to LoRA; merges that were not run have no row.`,
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
        ...MERGE_METHODS.map((m) => `4-way ${MERGE_LABELS[m]} merge loss on the pair's tasks`),
      ],
      rows,
      ["left", "left"],
    ),
    `Mask Jaccard: overlap of the two B masks (dense adapters have none). Principal angle between the A subspaces ` +
      `(90° = orthogonal). Cross-term ratio: ‖cross terms of a linear merge‖ / ‖exact sum‖, for the two adapters alone. ` +
      `The merge-loss columns are NOT a merge of the pair: no pair was merged on its own. They are the merge of all ` +
      `four adapters, scored on the pair's two tasks: 1 − merged / single-task accuracy of the same method, mean over ` +
      `those two tasks (all pairs: over every merged task). They show where the 4-way merge loses, next to the pair's ` +
      `geometry; they do not isolate the pair's own interference.`,
  ].join("\n\n");
}

const STATUS_TEXT: Record<Status, string> = {
  holds: "✅ holds",
  "does not hold": "❌ does not hold",
  "cannot tell at this size": "❔ cannot tell at this size",
  "not measured": "⚠️ not measured",
};

function intervalText(p: ComparisonPart): string {
  const i = p.interval;
  if (!i) return NOT_MEASURED;
  const perSeed = i.perSeed.map((d) => points(d * 100)).join(", ");
  return `${points(i.estimate * 100)} [${points(i.lo * 100)}, ${points(i.hi * 100)}]; per seed ${perSeed}`;
}

function claimsSection(list: readonly Claim[], seeds: number): string {
  const rows = list.flatMap((c) => [
    [`**${c.claim}**`, "", "", `**${STATUS_TEXT[c.status]}**`],
    ...c.parts.map((p) => [`  ${p.label}`, intervalText(p), points(p.threshold * 100), STATUS_TEXT[p.status]]),
  ]);
  return [
    markdownTable(["Claim / comparison", "Difference, points: estimate [95 % CI]; per seed", "Threshold", "Verdict"], rows, [
      "left",
      "left",
      "right",
      "left",
    ]),
    `Each comparison is paired: both arms were scored on the same test examples, and seed s of one arm is compared ` +
      `with seed s of the other. The interval is a two-way bootstrap (${BOOTSTRAP.replicates} replicates, resampling ` +
      `both the seeds and the test examples; fixed resampling seed ${BOOTSTRAP.seed}). A claim holds when the whole ` +
      `interval is on the claimed side of its threshold, does not hold when the whole interval is on the other side, ` +
      `and otherwise the data cannot tell at this size. "× 0.9" comparisons test "keeps at least 90 %" as ` +
      `after − 0.9 × before ≥ 0. With few seeds the seed part of the interval is coarse (${seedResamples(seeds)}), ` +
      `and per-task parts are not corrected for multiple comparisons.`,
  ].join("\n\n");
}

function comparisonRows(parts: readonly ComparisonPart[]): string[][] {
  return parts.map((p) => [p.label, intervalText(p), p.interval ? twoSided(p.interval) : NOT_MEASURED]);
}

function sharingSection(results: PaperResults): string {
  const sharings = results.config.aSharings ?? ["per-task"];
  if (!sharings.includes("shared") || !results.single.some((r) => r.aSharing === "shared")) {
    return "_Not measured: the shared-A variant has not been run._";
  }
  const parts = [
    ...(["lori-d", "lori-s"] as const).map((m) => sharingComparison(results, m)),
    ...(["lori-d", "lori-s"] as const).flatMap((m) =>
      MERGE_METHODS.map((merge) => sharingMergeComparison(results, m, merge)).filter((p) => p.interval !== null),
    ),
  ];
  const shared = results.continual.filter((r) => r.aSharing === "shared");
  const continualRows = (["lori-d", "lori-s"] as const).flatMap((m) =>
    (["per-task", "shared"] as const).map((a) => {
      const runs = results.continual.filter(
        (r) => r.method === m && (r.aSharing ?? "per-task") === a && r.maskPairing !== "task-A" && shared.some((s) => s.seed === r.seed),
      );
      const mean = (xs: number[]) => (xs.length ? xs.reduce((x, y) => x + y, 0) / xs.length : null);
      return [
        METHOD_LABELS[m],
        a,
        String(runs.length),
        pct(mean(runs.map((r) => r.safetyAfter))),
        pct(mean(runs.map((r) => r.taskAccuracy))),
      ];
    }),
  );
  return [
    `"per-task": each task's adapter has its own A (seed × 100 + task index); "shared": every task of a seed uses ` +
      `one A (seed × 100 + 50). Only LoRI's A is frozen, so only LoRI-D and LoRI-S have the variant. Single-task ` +
      `scores should match within noise; merging and continual learning may not.`,
    markdownTable(["Comparison", "Difference, points: estimate [95 % CI]; per seed", "Reading"], comparisonRows(parts), [
      "left",
      "left",
      "left",
    ]),
    markdownTable(["Method", "A", "Continual runs", "Refusals after", "Task accuracy"], continualRows, ["left", "left"]),
  ].join("\n\n");
}

function pairingSection(results: PaperResults): string {
  const old = results.continual.filter((r) => r.maskPairing === "task-A");
  if (old.length === 0) return "_Not measured: the old pairing was not run._";
  const parts = pairingComparison(results);
  return [
    `The continued LoRI-S adapter keeps the safety adapter's A. Its task mask used to come from the task's own ` +
      `LoRI-D, trained under the task's A ("old pairing"): the mask's rank columns then refer to another A. The fix ` +
      `calibrates the mask with a LoRI-D trained on the task under the safety adapter's A. The old pairing is run ` +
      `once (seed ${[...new Set(old.map((r) => r.seed))].join(", ")}) to show the effect, and is left out of every other table.`,
    markdownTable(["Comparison", "Difference, points: estimate [95 % CI]; per seed", "Reading"], comparisonRows(parts), [
      "left",
      "left",
      "left",
    ]),
  ].join("\n\n");
}

function sweepSection(results: PaperResults): string {
  if (!results.sweeps || results.sweeps.length === 0) return "_Not run yet: no learning rate has been tuned on dev._";
  const tasks = [...new Set(results.sweeps.flatMap((s) => s.tasks))];
  const rows = results.sweeps.flatMap((s) =>
    s.grid.map((lr) => {
      const at = tasks.map((t) => s.points.find((p) => p.lr === lr && p.task === t));
      const accs = at.map((p) => p?.devAccuracy);
      const losses = at.map((p) => p?.devLoss ?? null);
      const known = accs.filter((a): a is number => a !== undefined);
      return [
        METHOD_LABELS[s.method],
        String(lr) + (lr === s.bestLr ? " **(best)**" : ""),
        ...accs.map((a) => pct(a)),
        ...losses.map((l) => (l === null ? NOT_MEASURED : l.toFixed(3))),
        pct(known.length === tasks.length ? known.reduce((x, y) => x + y, 0) / known.length : null),
      ];
    }),
  );
  const notes = results.sweeps
    .filter((s) => s.extensions > 0 || s.atEdge)
    .map(
      (s) =>
        `${METHOD_LABELS[s.method]}: grid extended ${s.extensions}×${s.atEdge ? ", best still at an edge (a wider sweep is needed)" : ""}`,
    );
  return [
    markdownTable(
      ["Method", "Learning rate", ...tasks.map((t) => `${t} dev accuracy`), ...tasks.map((t) => `${t} dev loss`), "Mean dev accuracy"],
      rows,
      ["left", "left"],
    ),
    `Seed ${results.sweeps[0]!.seed}, rank ${results.config.rank}, each method's own steps. Best: highest mean dev ` +
      `accuracy over the sweep's tasks, ties broken by lower dev loss (nats per token), then the smaller lr. LoRI-S ` +
      `takes its masks from the dev-best LoRI-D of each task. Every later run uses its method's best. Every training's ` +
      `log (dev loss, ‖B‖, max |B| and for LoRA and DoRA ‖A − A0‖ / ‖A0‖, every ${results.config.logEvery ?? 50} steps) is in results.json.` +
      (notes.length > 0 ? ` ${notes.join("; ")}.` : ""),
  ].join("\n\n");
}

/** Renders the charts into `options.chartDir` and returns the markdown of docs/results.md. */
export async function renderResultsMarkdown(results: PaperResults, options: ResultsMarkdownOptions): Promise<string> {
  // The main tables hold the per-task-A runs (with the fixed LoRI-S mask pairing); the variants have sections of their own.
  const summary = summarize(mainResults(results));
  const tasks = summary.tasks;
  const charts = new Map<string, string>();
  for (const chart of paperCharts(mainResults(results))) {
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
    `## ${SECTION_TITLES.sweep}`,
    sweepSection(results),
    charts.get("lr-sweep")!,
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
    `## ${SECTION_TITLES.sharing}`,
    sharingSection(results),
    `## ${SECTION_TITLES.pairing}`,
    pairingSection(results),
    `## ${SECTION_TITLES.claims}`,
    claimsSection(claims(mainResults(results)), results.config.seeds.length),
  );
  return `${parts.join("\n\n")}\n`;
}

/** "n seeds have k distinct resamples": resampling n seeds with replacement gives C(2n − 1, n) multisets. */
function seedResamples(n: number): string {
  let k = 1;
  for (let i = 1; i <= n; i++) k = (k * (n - 1 + i)) / i;
  return n === 1 ? "one seed: none" : `${n} seeds have ${Math.round(k)} distinct resamples`;
}
