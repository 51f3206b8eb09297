import { randomBytes } from "node:crypto";

/**
 * Ids of uploaded files and fine-tuning jobs, and the names of fine-tuned models. A fine-tuned model is
 * called `ft:<base>:<suffix>:<job-id>` (OpenAI's shape), but adapter names are limited to [A-Za-z0-9._-]{1,64},
 * so its adapter is stored as `ft-<hex of the job id>`; the job id alone decides both, so the mapping needs no table.
 */

const FILE_ID = /^file-[0-9a-f]{24}$/;
const JOB_ID = /^ftjob-([0-9a-f]{24})$/;
const EVENT_PREFIX = "ftevent-";

export function newFileId(): string {
  return `file-${randomBytes(12).toString("hex")}`;
}

export function newJobId(): string {
  return `ftjob-${randomBytes(12).toString("hex")}`;
}

export function isFileId(id: string): boolean {
  return FILE_ID.test(id);
}

export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

export function eventId(jobId: string, sequence: number): string {
  return `${EVENT_PREFIX}${jobId.slice("ftjob-".length)}-${sequence}`;
}

/** The sequence number inside an event id of this job, or undefined when it is not one of its ids. */
export function eventSequence(jobId: string, id: string): number | undefined {
  const prefix = `${EVENT_PREFIX}${jobId.slice("ftjob-".length)}-`;
  if (!id.startsWith(prefix)) return undefined;
  const n = Number(id.slice(prefix.length));
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** `ft:<base>:<suffix>:<job-id>`; without a suffix the part stays empty (`ft:base::ftjob-...`). */
export function fineTunedModelId(base: string, suffix: string | null, jobId: string): string {
  return `ft:${base}:${suffix ?? ""}:${jobId}`;
}

/** The stored adapter name of a job's result. */
export function adapterNameForJob(jobId: string): string {
  const match = JOB_ID.exec(jobId);
  if (!match) throw new Error(`not a job id: ${jobId}`);
  return `ft-${match[1]}`;
}

/** The job id inside a fine-tuned model id (the last `:` part), or undefined when `modelId` is not one. */
export function jobIdOfModelId(modelId: string): string | undefined {
  if (!modelId.startsWith("ft:")) return undefined;
  const jobId = modelId.slice(modelId.lastIndexOf(":") + 1);
  return isJobId(jobId) ? jobId : undefined;
}

let lastCreatedMs = 0;

/** Milliseconds since the epoch, strictly increasing within this process: creation order even within one ms. */
export function creationStamp(): number {
  lastCreatedMs = Math.max(Date.now(), lastCreatedMs + 1);
  return lastCreatedMs;
}

/** Oldest first, by creation stamp (records from before stamps existed fall back to their second). */
export function byCreation(
  a: { created_at: number; created_ms?: number; id: string },
  b: { created_at: number; created_ms?: number; id: string },
): number {
  return (a.created_ms ?? a.created_at * 1000) - (b.created_ms ?? b.created_at * 1000) || a.id.localeCompare(b.id);
}
