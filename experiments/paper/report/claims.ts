import type { TaskId } from "../../../src/tasks/task.js";
import type {
  AdapterMethodId,
  ASharing,
  CapabilityTaskId,
  ContinualRun,
  MergeRun,
  MethodId,
  PaperResults,
  SingleTaskRun,
  TaskScore,
} from "../results-schema.js";
import { above, allOf, atLeast, below, pairedBootstrap, type PairedCell, type PairedInterval, type VerdictStatus } from "./bootstrap.js";

/**
 * The paper's claims and the report's other comparisons, each a paired difference per seed with a 95 % bootstrap
 * interval over seeds and test examples (bootstrap.ts), and a verdict read off the interval. A comparison whose
 * runs or per-example outcomes are missing is "not measured".
 */

export type Status = VerdictStatus | "not measured";

export interface ComparisonPart {
  /** What is compared, e.g. "code: LoRI-S − LoRA". */
  readonly label: string;
  readonly interval: PairedInterval | null;
  /** The threshold the interval is judged against, in the statistic's units (fractions). */
  readonly threshold: number;
  readonly status: Status;
}

export interface Claim {
  readonly claim: string;
  readonly parts: readonly ComparisonPart[];
  readonly status: Status;
}

/** Bootstrap settings of every comparison: fixed, so a rerender gives the same intervals. */
export const BOOTSTRAP = { replicates: 2000, seed: 16, level: 0.95 } as const;

export const CLAIM_TEXT = {
  loriSVsLora: "LoRI-S is at most 2 points below LoRA on every task",
  merge: "cat-merged LoRI keeps ≥ 90 % of each single-task score, and merges better than LoRA (cat)",
  continual: "after continual learning LoRI-S keeps ≥ 90 % of its harmful-request refusals, LoRA less",
} as const;

const sharingOf = (r: { aSharing?: ASharing }) => r.aSharing ?? "per-task";

function outcomes(score: TaskScore | undefined, groups?: readonly string[], group?: string): number[] | null {
  if (!score?.outcomes) return null;
  const all = [...score.outcomes].map((c) => (c === "1" ? 1 : 0));
  if (group === undefined) return all;
  if (!groups || groups.length !== all.length) return null;
  return all.filter((_, i) => groups[i] === group);
}

/** Seeds both arms ran, in order. */
function commonSeeds(a: readonly { seed: number }[], b: readonly { seed: number }[]): number[] {
  const bs = new Set(b.map((r) => r.seed));
  return [...new Set(a.map((r) => r.seed))].filter((s) => bs.has(s)).sort((x, y) => x - y);
}

/** A cell from per-seed scores of two arms; null when a seed lacks outcomes or the example lists differ. */
function cell(
  label: string,
  seeds: readonly number[],
  a: (seed: number) => number[] | null,
  b: (seed: number) => number[] | null,
): PairedCell | null {
  if (seeds.length === 0) return null;
  const as = seeds.map(a);
  const bs = seeds.map(b);
  if (as.some((x) => x === null) || bs.some((x) => x === null)) return null;
  const n = as[0]!.length;
  if (n === 0 || [...as, ...bs].some((x) => x!.length !== n)) return null;
  return { label, a: as as number[][], b: bs as number[][] };
}

function part(
  label: string,
  cells: readonly (PairedCell | null)[],
  threshold: number,
  judge: (i: PairedInterval, t: number) => VerdictStatus,
  scaleB = 1,
): ComparisonPart {
  if (cells.length === 0 || cells.some((c) => c === null)) return { label, interval: null, threshold, status: "not measured" };
  const interval = pairedBootstrap(cells as PairedCell[], { ...BOOTSTRAP, scaleB });
  return { label, interval, threshold, status: judge(interval, threshold) };
}

function combine(parts: readonly ComparisonPart[]): Status {
  if (parts.length === 0 || parts.some((p) => p.status === "not measured")) {
    // a part that clearly fails decides the claim even when another part is missing
    return parts.some((p) => p.status === "does not hold") ? "does not hold" : "not measured";
  }
  return allOf(parts.map((p) => p.status as VerdictStatus));
}

const single = (results: PaperResults, method: MethodId, sharing: ASharing = "per-task") =>
  results.single.filter((r) => r.method === method && sharingOf(r) === sharing);
const scoreOf = (runs: readonly SingleTaskRun[], task: TaskId, seed: number) => runs.find((r) => r.task === task && r.seed === seed)?.score;
const mergeScore = (runs: readonly MergeRun[], task: TaskId, seed: number) =>
  runs.find((r) => r.seed === seed)?.scores.find((s) => s.task === task);

/** Tasks in results order that both arms ran. */
function tasksOf(results: PaperResults, a: readonly { task: TaskId }[], b: readonly { task: TaskId }[]): TaskId[] {
  const order = results.config.testSize ? (Object.keys(results.config.testSize) as TaskId[]) : [];
  const bt = new Set(b.map((r) => r.task));
  return order.filter((t) => a.some((r) => r.task === t) && bt.has(t));
}

export function loriSVsLoraClaim(results: PaperResults): Claim {
  const loriS = single(results, "lori-s");
  const lora = single(results, "lora");
  const parts = tasksOf(results, loriS, lora).map((task) => {
    const seeds = commonSeeds(
      loriS.filter((r) => r.task === task),
      lora.filter((r) => r.task === task),
    );
    const c = cell(
      task,
      seeds,
      (s) => outcomes(scoreOf(loriS, task, s)),
      (s) => outcomes(scoreOf(lora, task, s)),
    );
    return part(`${task}: LoRI-S − LoRA`, [c], -0.02, atLeast);
  });
  return { claim: CLAIM_TEXT.loriSVsLora, parts, status: combine(parts) };
}

export function mergeClaim(results: PaperResults, merge: MergeRun["merge"] = "cat"): Claim {
  const merges = (method: AdapterMethodId) =>
    results.merges.filter((m) => m.method === method && m.merge === merge && sharingOf(m) === "per-task");
  const parts: ComparisonPart[] = [];
  for (const method of ["lori-d", "lori-s"] as const) {
    const merged = merges(method);
    const singles = single(results, method);
    const tasks = [...new Set(merged.flatMap((m) => m.scores.map((s) => s.task)))];
    const seeds = commonSeeds(merged, singles);
    for (const task of tasks) {
      const c = cell(
        task,
        seeds,
        (s) => outcomes(mergeScore(merged, task, s)),
        (s) => outcomes(scoreOf(singles, task, s)),
      );
      parts.push(part(`${task}: ${method} merged − 0.9 × single`, [c], 0, atLeast, 0.9));
    }
    const lora = merges("lora");
    const both = commonSeeds(merged, lora);
    const cells = tasks.map((task) =>
      cell(
        task,
        both,
        (s) => outcomes(mergeScore(merged, task, s)),
        (s) => outcomes(mergeScore(lora, task, s)),
      ),
    );
    parts.push(part(`mean over tasks: ${method} merged − LoRA merged`, cells, 0, above));
  }
  return { claim: CLAIM_TEXT.merge, parts, status: combine(parts) };
}

/** The continual runs of the main table: per-task A, LoRI-S with the fixed mask pairing. */
export const mainContinual = (results: PaperResults) =>
  results.continual.filter((r) => sharingOf(r) === "per-task" && (r.maskPairing ?? null) !== "task-A");

function retentionCells(results: PaperResults, runs: readonly ContinualRun[], sharing: ASharing = "per-task"): (PairedCell | null)[] {
  const groups = results.testGroups?.safety;
  const tasks = [...new Set(runs.map((r) => r.task))];
  return tasks.map((task) => {
    const byTask = runs.filter((r) => r.task === task);
    const method = byTask[0]!.method;
    const safety = single(results, method, sharing);
    const seeds = commonSeeds(
      byTask,
      safety.filter((r) => r.task === "safety"),
    );
    return cell(
      task,
      seeds,
      (s) => outcomes(byTask.find((r) => r.seed === s)?.safetyScore, groups, "harmful"),
      (s) => outcomes(scoreOf(safety, "safety", s), groups, "harmful"),
    );
  });
}

export function continualClaim(results: PaperResults): Claim {
  const runs = mainContinual(results);
  const loriS = runs.filter((r) => r.method === "lori-s");
  const lora = runs.filter((r) => r.method === "lora");
  const parts = [
    loriS.length === 0
      ? { label: "LoRI-S refusals after − 0.9 × before", interval: null, threshold: 0, status: "not measured" as const }
      : part("LoRI-S refusals after − 0.9 × before (mean over tasks)", retentionCells(results, loriS), 0, atLeast, 0.9),
    lora.length === 0
      ? { label: "LoRA refusals after − 0.9 × before", interval: null, threshold: 0, status: "not measured" as const }
      : part("LoRA refusals after − 0.9 × before (mean over tasks; must be below 0)", retentionCells(results, lora), 0, below, 0.9),
  ];
  return { claim: CLAIM_TEXT.continual, parts, status: combine(parts) };
}

export function claims(results: PaperResults): Claim[] {
  return [loriSVsLoraClaim(results), mergeClaim(results), continualClaim(results)];
}

// ---------------------------------------------------------------------------------------------------------------
// Comparisons that are not claims of the paper: judged against "no difference" (0), two-sided.

/** Whether an interval excludes 0 (a difference), or not ("no difference shown at this size"). */
export function twoSided(interval: PairedInterval | null): string {
  if (!interval) return "not measured";
  if (interval.lo > 0) return "higher";
  if (interval.hi < 0) return "lower";
  return "no difference shown at this size";
}

/** Shared A − one A per task, single-task accuracy (mean over tasks), per method, on the seeds both ran. */
export function sharingComparison(results: PaperResults, method: MethodId): ComparisonPart {
  const shared = single(results, method, "shared");
  const perTask = single(results, method, "per-task");
  const tasks = tasksOf(results, shared, perTask);
  const seeds = commonSeeds(shared, perTask);
  const cells = tasks.map((task) =>
    cell(
      task,
      seeds,
      (s) => outcomes(scoreOf(shared, task, s)),
      (s) => outcomes(scoreOf(perTask, task, s)),
    ),
  );
  return part(`${method}: shared A − per-task A (mean over tasks)`, cells, 0, atLeast);
}

/** Shared A − per-task A of a merge (mean merged accuracy over tasks). */
export function sharingMergeComparison(results: PaperResults, method: AdapterMethodId, merge: MergeRun["merge"]): ComparisonPart {
  const of = (sharing: ASharing) => results.merges.filter((m) => m.method === method && m.merge === merge && sharingOf(m) === sharing);
  const shared = of("shared");
  const perTask = of("per-task");
  const tasks = [...new Set(shared.flatMap((m) => m.scores.map((s) => s.task)))];
  const seeds = commonSeeds(shared, perTask);
  const cells = tasks.map((task) =>
    cell(
      task,
      seeds,
      (s) => outcomes(mergeScore(shared, task, s)),
      (s) => outcomes(mergeScore(perTask, task, s)),
    ),
  );
  return part(`${method} ${merge}: shared A − per-task A`, cells, 0, atLeast);
}

/** Continual LoRI-S, fixed mask pairing − old pairing, on the seed(s) the old one ran: refusals kept and task accuracy. */
export function pairingComparison(results: PaperResults): ComparisonPart[] {
  const old = results.continual.filter((r) => r.maskPairing === "task-A");
  const fixed = results.continual.filter((r) => r.method === "lori-s" && r.maskPairing === "same-A" && sharingOf(r) === "per-task");
  const groups = results.testGroups?.safety;
  const tasks = [...new Set(old.map((r) => r.task))] as CapabilityTaskId[];
  const seeds = commonSeeds(old, fixed);
  const at = (runs: readonly ContinualRun[], task: TaskId, seed: number) => runs.find((r) => r.task === task && r.seed === seed);
  const refusals = tasks.map((task) =>
    cell(
      task,
      seeds,
      (s) => outcomes(at(fixed, task, s)?.safetyScore, groups, "harmful"),
      (s) => outcomes(at(old, task, s)?.safetyScore, groups, "harmful"),
    ),
  );
  const accuracy = tasks.map((task) =>
    cell(
      task,
      seeds,
      (s) => outcomes(at(fixed, task, s)?.taskScore),
      (s) => outcomes(at(old, task, s)?.taskScore),
    ),
  );
  return [
    part("harmful refusals after: fixed − old pairing (mean over tasks)", refusals, 0, atLeast),
    part("task accuracy: fixed − old pairing (mean over tasks)", accuracy, 0, atLeast),
  ];
}
