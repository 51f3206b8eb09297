import { paperConfig, type ExperimentConfig } from "./config.js";
import type { BaseModel } from "./experiments/base.js";
import { BASE_EVAL_STEP, BASE_MODEL_STEP } from "./ids.js";
import type { TaskId } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { testExamples } from "./experiments/base.js";
import type {
  ContinualRun,
  InterferenceRow,
  MergeRun,
  MethodId,
  PaperResults,
  SingleTaskRun,
  SweepResult,
  TaskScore,
} from "./results-schema.js";
import type { ExperimentId, Step } from "./step.js";
import { readRecord, type WorkPaths } from "./work-dir.js";

/** results.json from the stored results of every planned step that has one (whichever invocation made it). */
export async function assembleResults(
  plan: readonly Step[],
  keys: ReadonlyMap<string, string>,
  work: WorkPaths,
  config: ExperimentConfig,
  runtimeSeconds: number,
): Promise<PaperResults> {
  const results = new Map<string, unknown>();
  for (const s of plan) {
    const record = await readRecord(work, s.id);
    if (record && record.key === keys.get(s.id)) results.set(s.id, record.result);
  }
  const of = <T>(experiment: ExperimentId) =>
    plan.filter((s) => s.experiment === experiment && results.has(s.id)).map((s) => results.get(s.id) as T);
  const base = results.get(BASE_MODEL_STEP) as BaseModel | undefined;
  const sweeps = of<SweepResult>("sweep");
  const chosen = Object.fromEntries(sweeps.map((s) => [s.method, s.bestLr])) as Partial<Record<MethodId, number>>;
  // The groups of the test examples, for statistics on one group (safety's harmful half): from the generators.
  const testGroups: Partial<Record<TaskId, string[]>> = {};
  for (const task of config.tasks) {
    if (!TASKS[task].groupLabels) continue;
    testGroups[task] = testExamples(config, task).map((e) => e.group ?? "");
  }
  const baseLabel = base?.label ?? (config.base.kind === "file" ? config.base.path : "random llama (model create)");
  return {
    generatedAt: new Date().toISOString(),
    config: paperConfig(config, baseLabel, base?.params ?? 0, chosen),
    runtimeSeconds: Math.round(runtimeSeconds * 10) / 10,
    baseScores: (results.get(BASE_EVAL_STEP) as TaskScore[] | undefined) ?? [],
    testGroups,
    sweeps,
    single: of<SingleTaskRun>("single"),
    merges: of<MergeRun>("merge"),
    // the continual experiment also trains the masks of LoRI-S (results without scores): only runs count
    continual: of<ContinualRun>("continual").filter((r) => "safetyAfter" in r),
    interference: of<InterferenceRow>("interference"),
  };
}
