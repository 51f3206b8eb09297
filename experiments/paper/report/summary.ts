import { TASK_IDS, type TaskId } from "../../../src/tasks/task.js";
import {
  PAPER_MERGE_METHODS,
  type AdapterMethodId,
  type CapabilityTaskId,
  type MergeMethodId,
  type MethodId,
  type PaperResults,
  type TaskScore,
} from "../results-schema.js";

/**
 * Pure functions from PaperResults to the numbers of docs/results.md: table rows, relative merge scores and the
 * verdicts on the paper's claims. Nothing here throws on missing data: a method, task or seed that was not run
 * gives null / "not measured".
 *
 * Conventions:
 * - accuracies stay fractions in [0, 1]; "points" are percentage points (difference × 100);
 * - std is the sample standard deviation over seeds (n − 1 in the denominator), 0 for a single seed;
 * - a relative merge score is merged accuracy / single-task accuracy of the same method, task and seed
 *   (pairs whose single-task accuracy is 0 or missing are left out);
 * - a mean "over tasks" is the mean of the per-task means (each task weighs the same, whatever its seed count).
 */

export const METHODS: readonly MethodId[] = ["full", "lora", "dora", "lori-d", "lori-s"];
export const ADAPTER_METHODS: readonly AdapterMethodId[] = ["lora", "lori-d", "lori-s"];
export const MERGE_METHODS: readonly MergeMethodId[] = PAPER_MERGE_METHODS;

export const METHOD_LABELS: Readonly<Record<MethodId, string>> = {
  full: "Full FT",
  lora: "LoRA",
  dora: "DoRA",
  "lori-d": "LoRI-D",
  "lori-s": "LoRI-S",
};
/** One label per merge method of PAPER_MERGE_METHODS (add the new methods' labels here too). */
export const MERGE_LABELS: Readonly<Record<MergeMethodId, string>> = {
  cat: "concat",
  linear: "linear",
  stack: "concat, weight 1",
  ties: "TIES (density 0.5)",
  dare_linear: "DARE linear (density 0.5)",
  dare_ties: "DARE TIES (density 0.5)",
  magnitude_prune: "magnitude prune (density 0.5)",
  svd: "SVD (largest input rank)",
};

/**
 * The runs of the main tables: per-task A (the shared-A variant has a section of its own) and, for continual
 * LoRI-S, the fixed mask pairing (the old one is shown once, in its own section). Old results without these
 * fields count as per-task.
 */
export function mainResults(results: PaperResults): PaperResults {
  const perTask = (r: { aSharing?: string }) => (r.aSharing ?? "per-task") === "per-task";
  return {
    ...results,
    single: results.single.filter(perTask),
    merges: results.merges.filter(perTask),
    continual: results.continual.filter((r) => perTask(r) && r.maskPairing !== "task-A"),
  };
}

export interface Stat {
  readonly mean: number;
  /** Sample standard deviation (n − 1); 0 when n = 1. */
  readonly std: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

/** Mean, std, min and max of the finite values; null when there are none. */
export function stat(values: readonly number[]): Stat | null {
  const xs = values.filter((v) => Number.isFinite(v));
  const n = xs.length;
  if (n === 0) return null;
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, min: Math.min(...xs), max: Math.max(...xs), n };
}

/** Mean of the non-null finite values; null when there are none. */
export function meanOf(values: readonly (number | null | undefined)[]): number | null {
  const xs = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  return xs.length === 0 ? null : xs.reduce((s, x) => s + x, 0) / xs.length;
}

function orderTasks(tasks: Iterable<TaskId>): TaskId[] {
  const set = new Set(tasks);
  const known = TASK_IDS.filter((t) => set.has(t));
  const unknown = [...set].filter((t) => !TASK_IDS.includes(t)).sort();
  return [...known, ...unknown];
}

/** Every task that appears anywhere in the results, in TASK_IDS order. */
export function tasksIn(results: PaperResults): TaskId[] {
  return orderTasks([
    ...results.baseScores.map((s) => s.task),
    ...results.single.map((r) => r.task),
    ...results.merges.flatMap((m) => m.scores.map((s) => s.task)),
    ...results.continual.map((c) => c.task),
  ]);
}

// ---------------------------------------------------------------------------------------------------------------
// Base model

export interface BaseRow {
  readonly task: TaskId;
  readonly accuracy: number;
  readonly examples: number;
  readonly groups: Readonly<Record<string, number>> | null;
}

export function baseRows(results: PaperResults): BaseRow[] {
  const byTask = new Map<TaskId, TaskScore>();
  for (const s of results.baseScores) byTask.set(s.task, s);
  return orderTasks(byTask.keys()).map((task) => {
    const s = byTask.get(task)!;
    return { task, accuracy: s.accuracy, examples: s.examples, groups: s.groups ?? null };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Table 1: single task

export interface SingleTaskRow {
  readonly method: MethodId;
  /** Runs of this method (all tasks and seeds); 0 = the method was not run. */
  readonly runs: number;
  /** Accuracy over seeds, per task. */
  readonly accuracy: Partial<Record<TaskId, Stat>>;
  /** Mean over tasks of the per-task mean accuracy. */
  readonly meanAccuracy: number | null;
  readonly trainableParams: Stat | null;
  readonly bytes: Stat | null;
  readonly trainSeconds: Stat | null;
}

export function singleTaskRows(results: PaperResults): SingleTaskRow[] {
  return METHODS.map((method) => {
    const runs = results.single.filter((r) => r.method === method);
    const accuracy: Partial<Record<TaskId, Stat>> = {};
    for (const task of orderTasks(runs.map((r) => r.task))) {
      const s = stat(runs.filter((r) => r.task === task).map((r) => r.score.accuracy));
      if (s) accuracy[task] = s;
    }
    return {
      method,
      runs: runs.length,
      accuracy,
      meanAccuracy: meanOf(Object.values(accuracy).map((s) => s.mean)),
      trainableParams: stat(runs.map((r) => r.trainableParams)),
      bytes: stat(runs.map((r) => r.bytes)),
      trainSeconds: stat(runs.map((r) => r.trainSeconds)),
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Table 2: merging

export interface RelativeScore {
  readonly method: AdapterMethodId;
  readonly merge: MergeMethodId;
  readonly seed: number;
  readonly task: TaskId;
  readonly merged: number;
  readonly single: number;
  /** merged / single. */
  readonly relative: number;
}

function singleAccuracy(results: PaperResults, method: MethodId, task: TaskId, seed: number): number | null {
  const run = results.single.findLast((r) => r.method === method && r.task === task && r.seed === seed);
  return run ? run.score.accuracy : null;
}

/** One relative score per merged adapter, task and seed that has a single-task run to compare with. */
export function relativeMergeScores(results: PaperResults): RelativeScore[] {
  const out: RelativeScore[] = [];
  for (const m of results.merges) {
    for (const s of m.scores) {
      const single = singleAccuracy(results, m.method, s.task, m.seed);
      if (single === null || !(single > 0)) continue;
      out.push({
        method: m.method,
        merge: m.merge,
        seed: m.seed,
        task: s.task,
        merged: s.accuracy,
        single,
        relative: s.accuracy / single,
      });
    }
  }
  return out;
}

export interface MergeTaskCell {
  /** Accuracy of the merged adapter over seeds. */
  readonly accuracy: Stat | null;
  /** Relative score over seeds; null when no single-task run of the same seed exists. */
  readonly relative: Stat | null;
}

export interface MergeRow {
  readonly method: AdapterMethodId;
  readonly merge: MergeMethodId;
  readonly runs: number;
  readonly tasks: Partial<Record<TaskId, MergeTaskCell>>;
  /** Mean over tasks of the per-task mean merged accuracy. */
  readonly meanAccuracy: number | null;
  /** Mean over tasks of the per-task mean relative score. */
  readonly meanRelative: number | null;
  /** The task with the lowest mean relative score. */
  readonly minRelative: { readonly task: TaskId; readonly value: number } | null;
}

export function mergeRows(results: PaperResults): MergeRow[] {
  const relative = relativeMergeScores(results);
  const rows: MergeRow[] = [];
  for (const method of ADAPTER_METHODS) {
    for (const merge of MERGE_METHODS) {
      const runs = results.merges.filter((m) => m.method === method && m.merge === merge);
      const scores = runs.flatMap((m) => m.scores);
      const rel = relative.filter((r) => r.method === method && r.merge === merge);
      const tasks: Partial<Record<TaskId, MergeTaskCell>> = {};
      let minRelative: MergeRow["minRelative"] = null;
      for (const task of orderTasks(scores.map((s) => s.task))) {
        const cell: MergeTaskCell = {
          accuracy: stat(scores.filter((s) => s.task === task).map((s) => s.accuracy)),
          relative: stat(rel.filter((r) => r.task === task).map((r) => r.relative)),
        };
        tasks[task] = cell;
        if (cell.relative && (minRelative === null || cell.relative.mean < minRelative.value)) {
          minRelative = { task, value: cell.relative.mean };
        }
      }
      const cells = Object.values(tasks);
      rows.push({
        method,
        merge,
        runs: runs.length,
        tasks,
        meanAccuracy: meanOf(cells.map((c) => c.accuracy?.mean)),
        meanRelative: meanOf(cells.map((c) => c.relative?.mean)),
        minRelative,
      });
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// Table 3: continual learning

export interface ContinualRow {
  readonly method: AdapterMethodId;
  /** The task trained second; "all" aggregates every task (and seed) of the method. */
  readonly task: CapabilityTaskId | "all";
  readonly runs: number;
  readonly safetyBefore: Stat | null;
  readonly safetyAfter: Stat | null;
  /** safetyAfter / safetyBefore per run (runs with safetyBefore = 0 left out). */
  readonly retention: Stat | null;
  readonly taskAccuracy: Stat | null;
}

/** Per adapter method that has continual runs: one row per task, then its "all" row. */
export function continualRows(results: PaperResults): ContinualRow[] {
  const rows: ContinualRow[] = [];
  for (const method of ADAPTER_METHODS) {
    const runs = results.continual.filter((c) => c.method === method);
    if (runs.length === 0) continue;
    const row = (task: ContinualRow["task"], rs: typeof runs): ContinualRow => ({
      method,
      task,
      runs: rs.length,
      safetyBefore: stat(rs.map((r) => r.safetyBefore)),
      safetyAfter: stat(rs.map((r) => r.safetyAfter)),
      retention: stat(rs.filter((r) => r.safetyBefore > 0).map((r) => r.safetyAfter / r.safetyBefore)),
      taskAccuracy: stat(rs.map((r) => r.taskAccuracy)),
    });
    for (const task of orderTasks(runs.map((r) => r.task)) as CapabilityTaskId[]) {
      rows.push(
        row(
          task,
          runs.filter((r) => r.task === task),
        ),
      );
    }
    rows.push(row("all", runs));
  }
  return rows;
}

/** Mean over seeds and tasks of safetyAfter / safetyBefore; null when the method has no continual run. */
export function safetyRetention(results: PaperResults, method: AdapterMethodId): number | null {
  return continualRows(results).find((r) => r.method === method && r.task === "all")?.retention?.mean ?? null;
}

// ---------------------------------------------------------------------------------------------------------------
// Interference next to merge loss

export interface InterferenceSummaryRow {
  readonly method: AdapterMethodId;
  /** The task pair, or null for the row that aggregates every pair of the method. */
  readonly pair: readonly [TaskId, TaskId] | null;
  readonly rows: number;
  /** null for dense adapters (no mask). */
  readonly maskJaccard: Stat | null;
  readonly meanAngleDeg: Stat | null;
  readonly crossTermRatio: Stat | null;
  /**
   * Measured merge loss, 1 − relative score, of the same method: the mean over the pair's two tasks (or over every
   * merged task, for the aggregate row) of 1 − the per-task mean relative score. null when not measured.
   */
  readonly mergeLoss: Readonly<Record<MergeMethodId, number | null>>;
}

/** A pair in TASK_IDS order, so (code, math) and (math, code) are one pair. */
function normalizePair(pair: readonly [TaskId, TaskId]): [TaskId, TaskId] {
  const [a, b] = pair;
  const ia = TASK_IDS.indexOf(a);
  const ib = TASK_IDS.indexOf(b);
  const swap = ia === ib ? a > b : ia === -1 ? true : ib === -1 ? false : ia > ib;
  return swap ? [b, a] : [a, b];
}

const pairKey = (pair: readonly [TaskId, TaskId]) => normalizePair(pair).join("+");

export function interferenceRows(results: PaperResults): InterferenceSummaryRow[] {
  const merges = mergeRows(results);
  const loss = (method: AdapterMethodId, merge: MergeMethodId, tasks: readonly TaskId[] | null): number | null => {
    const row = merges.find((m) => m.method === method && m.merge === merge);
    if (!row) return null;
    const cells = tasks === null ? Object.values(row.tasks) : tasks.map((t) => row.tasks[t]);
    return meanOf(cells.map((c) => (c?.relative ? 1 - c.relative.mean : null)));
  };
  const out: InterferenceSummaryRow[] = [];
  for (const method of ADAPTER_METHODS) {
    const all = results.interference.filter((r) => r.method === method);
    if (all.length === 0) continue;
    const pairs = new Map<string, [TaskId, TaskId]>();
    for (const r of all) pairs.set(pairKey(r.pair), normalizePair(r.pair));
    const summarize = (pair: [TaskId, TaskId] | null, rs: typeof all): InterferenceSummaryRow => ({
      method,
      pair,
      rows: rs.length,
      maskJaccard: stat(rs.flatMap((r) => (r.maskJaccard === null ? [] : [r.maskJaccard]))),
      meanAngleDeg: stat(rs.map((r) => r.meanAngleDeg)),
      crossTermRatio: stat(rs.map((r) => r.crossTermRatio)),
      mergeLoss: Object.fromEntries(MERGE_METHODS.map((m) => [m, loss(method, m, pair)])) as Record<MergeMethodId, number | null>,
    });
    for (const [key, pair] of pairs)
      out.push(
        summarize(
          pair,
          all.filter((r) => pairKey(r.pair) === key),
        ),
      );
    if (pairs.size > 1) out.push(summarize(null, all));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

export interface PaperSummary {
  readonly tasks: TaskId[];
  readonly base: BaseRow[];
  readonly single: SingleTaskRow[];
  readonly merges: MergeRow[];
  readonly continual: ContinualRow[];
  readonly interference: InterferenceSummaryRow[];
}

export function summarize(results: PaperResults): PaperSummary {
  return {
    tasks: tasksIn(results),
    base: baseRows(results),
    single: singleTaskRows(results),
    merges: mergeRows(results),
    continual: continualRows(results),
    interference: interferenceRows(results),
  };
}
