import { randomBytes } from "node:crypto";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { MethodId, PaperResults } from "../results-schema.js";
import { ADAPTER_METHODS, MERGE_LABELS, METHOD_LABELS, continualRows, mergeRows, singleTaskRows, stat, tasksIn } from "./summary.js";

/**
 * The report's charts: vega-lite specs built from PaperResults, rendered without a browser or canvas
 * (vega-lite → vega View with renderer "none" → SVG → resvg → PNG).
 *
 * Text: resvg draws with the fonts it finds on the system (fontconfig's directories). The specs ask for DejaVu Sans
 * (Debian's default), then common sans-serif faces; on a machine with none of them resvg falls back to the first
 * system font. A machine with no fonts at all gives charts without text.
 */

export const CHART_FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
/** PNG pixels per SVG pixel. */
export const CHART_SCALE = 2;

export type ChartSpec = TopLevelSpec;

export interface RenderedChart {
  readonly file: string;
  readonly bytes: number;
  /** PNG size in pixels. */
  readonly width: number;
  readonly height: number;
}

/** The SVG text of a vega-lite spec. */
export async function renderChartSvg(spec: ChartSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders the spec to a PNG at `outFile`, atomically (a temporary file in the same folder, then a rename). */
export async function renderChartPng(spec: ChartSpec, outFile: string): Promise<RenderedChart> {
  const svg = await renderChartSvg(spec);
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: CHART_SCALE },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
    logLevel: "off",
  });
  const image = resvg.render();
  const png = image.asPng();
  await mkdir(dirname(outFile), { recursive: true });
  const tmp = `${outFile}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, png);
    await rename(tmp, outFile);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  return { file: outFile, bytes: png.length, width: image.width, height: image.height };
}

// ---------------------------------------------------------------------------------------------------------------
// Specs

const METHOD_COLORS: Readonly<Record<MethodId, string>> = {
  full: "#8c8c8c",
  lora: "#e45756",
  dora: "#f58518",
  "lori-d": "#4c78a8",
  "lori-s": "#54a24b",
};

/** One color per method, the same in every chart. */
const methodColor = (methods: readonly MethodId[], title: string | null = "Method") => ({
  field: "method",
  type: "nominal" as const,
  title,
  sort: methods.map((m) => METHOD_LABELS[m]),
  scale: { domain: methods.map((m) => METHOD_LABELS[m]), range: methods.map((m) => METHOD_COLORS[m]) },
  legend: { orient: "bottom" as const },
});

const CONFIG = {
  font: CHART_FONT,
  background: "white",
  view: { stroke: null },
  title: { fontSize: 14, anchor: "start" as const, offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#e6e6e6" },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 12, titleFontSize: 12 },
};

/** A bar per (x, group) at `y`, with a min–max error bar from `lo` to `hi`. */
function barsWithRange(opts: {
  x: { field: string; title: string; sort: string[] };
  offset: string;
  color: ReturnType<typeof methodColor> | Record<string, unknown>;
  yTitle: string;
  yMax: number;
  tooltip: string[];
  width: number;
}) {
  const x = { field: opts.x.field, type: "nominal" as const, title: opts.x.title, sort: opts.x.sort, axis: { labelAngle: 0 } };
  const xOffset = { field: opts.offset, type: "nominal" as const, sort: (opts.color as { sort?: string[] }).sort };
  const y = {
    field: "mean",
    type: "quantitative" as const,
    title: opts.yTitle,
    axis: { format: ".0%" },
    scale: { domain: [0, opts.yMax] },
  };
  return {
    width: opts.width,
    height: 260,
    layer: [
      {
        mark: { type: "bar" as const },
        encoding: { x, xOffset, y, color: opts.color, tooltip: opts.tooltip.map((field) => ({ field })) },
      },
      {
        mark: { type: "rule" as const, color: "#333333", strokeWidth: 1.2 },
        encoding: { x, xOffset, y: { field: "lo", type: "quantitative" as const }, y2: { field: "hi" } },
      },
    ],
  };
}

/** Highest value to show on a percent axis: at least 100 %, rounded up to 10 %. */
const axisMax = (values: readonly number[]) => Math.max(1, Math.ceil(Math.max(0, ...values) * 10 - 1e-9) / 10);

/** (a) Single-task accuracy per task, grouped by method: mean over seeds, min–max error bars. */
export function singleTaskChart(results: PaperResults): ChartSpec | null {
  const rows = singleTaskRows(results).filter((r) => r.runs > 0);
  const values = rows.flatMap((r) =>
    Object.entries(r.accuracy).map(([task, s]) => ({
      task,
      method: METHOD_LABELS[r.method],
      mean: s.mean,
      lo: s.min,
      hi: s.max,
      seeds: s.n,
    })),
  );
  if (values.length === 0) return null;
  const methods = rows.map((r) => r.method);
  const tasks = tasksIn(results).filter((t) => values.some((v) => v.task === t));
  return {
    title: { text: "Single-task accuracy", subtitle: "mean over seeds; error bars: min–max" },
    data: { values },
    ...barsWithRange({
      x: { field: "task", title: "Task", sort: tasks },
      offset: "method",
      color: methodColor(methods),
      yTitle: "Accuracy",
      yMax: axisMax(values.map((v) => v.hi)),
      tooltip: ["task", "method", "mean", "seeds"],
      width: Math.max(320, tasks.length * methods.length * 28),
    }),
    config: CONFIG,
  } as ChartSpec;
}

/** (b) Merged adapters, per task: accuracy relative to the single-task adapter of the same method, cat and linear. */
export function mergeChart(results: PaperResults): ChartSpec | null {
  const rows = mergeRows(results);
  const values = rows.flatMap((r) =>
    Object.entries(r.tasks).flatMap(([task, cell]) =>
      cell.relative
        ? [
            {
              task,
              method: METHOD_LABELS[r.method],
              merge: MERGE_LABELS[r.merge],
              mean: cell.relative.mean,
              lo: cell.relative.min,
              hi: cell.relative.max,
              seeds: cell.relative.n,
            },
          ]
        : [],
    ),
  );
  if (values.length === 0) return null;
  const methods = ADAPTER_METHODS.filter((m) => values.some((v) => v.method === METHOD_LABELS[m]));
  const tasks = tasksIn(results).filter((t) => values.some((v) => v.task === t));
  const inner = barsWithRange({
    x: { field: "task", title: "Task", sort: tasks },
    offset: "method",
    color: methodColor(methods),
    yTitle: "Merged / single-task accuracy",
    yMax: axisMax(values.map((v) => v.hi)),
    tooltip: ["task", "method", "merge", "mean", "seeds"],
    width: Math.max(240, tasks.length * methods.length * 24),
  });
  return {
    title: {
      text: "Merging: accuracy relative to the single-task adapter",
      subtitle: "mean over seeds; error bars: min–max; dashed: 90 %",
    },
    data: { values },
    facet: {
      column: {
        field: "merge",
        type: "nominal",
        title: "Merge",
        sort: ["cat", "linear", "stack"].map((m) => MERGE_LABELS[m as keyof typeof MERGE_LABELS]),
      },
    },
    spec: {
      width: inner.width,
      height: inner.height,
      layer: [
        ...inner.layer,
        {
          mark: { type: "rule", strokeDash: [4, 3], color: "#555555" },
          encoding: { y: { datum: 0.9, type: "quantitative" } },
        },
      ],
    },
    config: CONFIG,
  } as ChartSpec;
}

/**
 * (c) Continual learning (safety first, then a capability task): safety refusal rate before and after, per method
 * (mean over seeds and tasks), and the accuracy on the task trained second, per task and method.
 */
export function continualChart(results: PaperResults): ChartSpec | null {
  const rows = continualRows(results);
  const methods = ADAPTER_METHODS.filter((m) => rows.some((r) => r.method === m));
  if (methods.length === 0) return null;
  const safety = methods.flatMap((method) => {
    const runs = results.continual.filter((c) => c.method === method);
    return (
      [
        ["before", runs.map((r) => r.safetyBefore)],
        ["after", runs.map((r) => r.safetyAfter)],
      ] as const
    ).flatMap(([phase, xs]) => {
      const s = stat(xs);
      return s ? [{ method: METHOD_LABELS[method], phase, mean: s.mean, lo: s.min, hi: s.max, runs: s.n }] : [];
    });
  });
  const accuracy = rows.flatMap((r) =>
    r.task !== "all" && r.taskAccuracy
      ? [
          {
            task: r.task,
            method: METHOD_LABELS[r.method],
            mean: r.taskAccuracy.mean,
            lo: r.taskAccuracy.min,
            hi: r.taskAccuracy.max,
            seeds: r.taskAccuracy.n,
          },
        ]
      : [],
  );
  const tasks = tasksIn(results).filter((t) => accuracy.some((v) => v.task === t));
  const phaseColor = {
    field: "phase",
    type: "nominal" as const,
    title: "Safety adapter",
    sort: ["before", "after"],
    scale: { domain: ["before", "after"], range: ["#9ecae9", "#2f5f8a"] },
    legend: { orient: "bottom" as const },
  };
  const safetyPanel = {
    title: "Harmful-request refusal rate",
    data: { values: safety },
    ...barsWithRange({
      x: { field: "method", title: "Method", sort: methods.map((m) => METHOD_LABELS[m]) },
      offset: "phase",
      color: phaseColor,
      yTitle: "Refusal rate",
      yMax: 1,
      tooltip: ["method", "phase", "mean", "runs"],
      width: Math.max(200, methods.length * 70),
    }),
  };
  const accuracyPanel = {
    title: "Accuracy on the task trained second",
    data: { values: accuracy },
    ...barsWithRange({
      x: { field: "task", title: "Task", sort: tasks },
      offset: "method",
      color: methodColor(methods),
      yTitle: "Accuracy",
      yMax: 1,
      tooltip: ["task", "method", "mean", "seeds"],
      width: Math.max(200, tasks.length * methods.length * 24),
    }),
  };
  return {
    title: { text: "Continual learning: safety, then a task", subtitle: "mean over seeds (and tasks, left); error bars: min–max" },
    hconcat: accuracy.length > 0 ? [safetyPanel, accuracyPanel] : [safetyPanel],
    resolve: { scale: { color: "independent", xOffset: "independent" }, legend: { color: "independent" } },
    config: CONFIG,
  } as ChartSpec;
}

export interface ChartDef {
  /** File name without extension. */
  readonly name: string;
  readonly title: string;
  readonly spec: ChartSpec | null;
}

/** The lr sweep: mean dev accuracy over the sweep's tasks against the learning rate (log scale), a line per method. */
export function sweepChart(results: PaperResults): ChartSpec | null {
  const sweeps = results.sweeps ?? [];
  const values = sweeps.flatMap((s) =>
    s.grid.flatMap((lr) => {
      const at = s.tasks.map((t) => s.points.find((p) => p.lr === lr && p.task === t));
      if (at.some((p) => p === undefined)) return [];
      return [
        { method: METHOD_LABELS[s.method], lr, mean: at.reduce((sum, p) => sum + p!.devAccuracy, 0) / at.length, best: lr === s.bestLr },
      ];
    }),
  );
  if (values.length === 0) return null;
  const methods = sweeps.map((s) => s.method);
  const x = { field: "lr", type: "quantitative" as const, title: "Learning rate", scale: { type: "log" as const } };
  const y = { field: "mean", type: "quantitative" as const, title: "Mean dev accuracy", axis: { format: ".0%" } };
  return {
    title: { text: "Learning-rate sweep on dev", subtitle: `mean over ${sweeps[0]!.tasks.join(" and ")}; filled: the dev-best lr` },
    data: { values },
    width: 420,
    height: 260,
    layer: [
      { mark: { type: "line" as const, point: false }, encoding: { x, y, color: methodColor(methods) } },
      {
        mark: { type: "point" as const, size: 50 },
        encoding: { x, y, color: methodColor(methods), fillOpacity: { condition: { test: "datum.best", value: 1 }, value: 0 } },
      },
    ],
    config: CONFIG,
  } as ChartSpec;
}

/** Every chart of the report, in order; a spec is null where its data was not measured. */
export function paperCharts(results: PaperResults): ChartDef[] {
  return [
    { name: "lr-sweep", title: "Learning-rate sweep", spec: sweepChart(results) },
    { name: "single-task", title: "Single-task accuracy", spec: singleTaskChart(results) },
    { name: "merging", title: "Merging", spec: mergeChart(results) },
    { name: "continual", title: "Continual learning", spec: continualChart(results) },
  ];
}
