import type { StoredFile } from "./file-store.js";
import type { JobRecord } from "./job-store.js";

/** OpenAI's object shapes for what the stores keep (owners and server paths never leave the server). */

export function fileObject(file: StoredFile) {
  return {
    id: file.id,
    object: "file" as const,
    bytes: file.bytes,
    created_at: file.created_at,
    expires_at: null,
    filename: file.filename,
    purpose: file.purpose,
    status: "processed" as const,
    status_details: null,
  };
}

export function jobObject(job: JobRecord) {
  const t = job.training;
  const hyperparameters = { ...t.hyperparameters };
  return {
    object: "fine_tuning.job" as const,
    id: job.id,
    model: job.model,
    created_at: job.created_at,
    finished_at: job.finished_at,
    fine_tuned_model: job.fine_tuned_model,
    organization_id: "lori-server",
    result_files: [] as string[],
    status: job.status,
    validation_file: job.validation_file,
    training_file: job.training_file,
    hyperparameters,
    method: { type: "supervised" as const, supervised: { hyperparameters } },
    trained_tokens: job.trained_tokens,
    error: job.error,
    user_provided_suffix: job.suffix,
    seed: t.seed,
    estimated_finish: job.estimated_finish,
    integrations: [] as unknown[],
    metadata: job.metadata,
    lori: {
      method: t.method,
      rank: t.rank,
      alpha: t.alpha,
      sparsity: t.sparsity,
      calibrate: t.calibrate,
      learning_rate: t.learningRate,
      calibrate_learning_rate: t.calibrateLearningRate,
      steps: t.steps,
      max_len: t.maxLen,
      targets: t.targets,
      eval_every: t.evalEvery,
      adapter: job.adapter,
    },
  };
}

export function checkpointObjects(job: JobRecord) {
  return job.checkpoints.map((c) => ({
    object: "fine_tuning.job.checkpoint" as const,
    id: c.id,
    created_at: c.created_at,
    fine_tuned_model_checkpoint: c.fine_tuned_model_checkpoint,
    fine_tuning_job_id: job.id,
    metrics: c.metrics,
    step_number: c.step,
  }));
}

/**
 * OpenAI-style cursor pagination over items sorted newest first: `after` is the id of the last item of the
 * previous page. An unknown cursor gives an empty page.
 */
export function paginate<T extends { id: string }>(
  newestFirst: readonly T[],
  after: string | undefined,
  limit: number,
): { data: T[]; has_more: boolean } {
  let start = 0;
  if (after !== undefined) {
    const index = newestFirst.findIndex((item) => item.id === after);
    start = index < 0 ? newestFirst.length : index + 1;
  }
  const data = newestFirst.slice(start, start + limit);
  return { data, has_more: start + limit < newestFirst.length };
}
