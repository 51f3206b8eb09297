import { paperConfig, type ExperimentConfig } from "./config.js";
import type { BaseModel } from "./experiments/base.js";
import { BASE_EVAL_STEP, BASE_MODEL_STEP } from "./ids.js";
import type { ContinualRun, InterferenceRow, MergeRun, PaperResults, SingleTaskRun, TaskScore } from "./results-schema.js";
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
  const baseLabel = base?.label ?? (config.base.kind === "file" ? config.base.path : "random llama (model create)");
  return {
    generatedAt: new Date().toISOString(),
    config: paperConfig(config, baseLabel, base?.params ?? 0),
    runtimeSeconds: Math.round(runtimeSeconds * 10) / 10,
    baseScores: (results.get(BASE_EVAL_STEP) as TaskScore[] | undefined) ?? [],
    single: of<SingleTaskRun>("single"),
    merges: of<MergeRun>("merge"),
    continual: of<ContinualRun>("continual"),
    interference: of<InterferenceRow>("interference"),
  };
}
