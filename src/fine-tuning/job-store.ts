import { appendFile, mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomically } from "../util/atomic-file.js";
import { byCreation, eventId, isJobId } from "./ids.js";
import type { ResolvedTraining } from "./job-request.js";

export const JOB_STATUSES = ["validating_files", "queued", "running", "succeeded", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export function isTerminal(status: JobStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled";
}

export interface JobError {
  readonly code: string;
  readonly message: string;
  readonly param: string | null;
}

/** A servable result of a job (OpenAI lists checkpoints as models one can use). */
export interface JobCheckpoint {
  readonly id: string;
  readonly created_at: number;
  readonly step: number;
  readonly fine_tuned_model_checkpoint: string;
  readonly metrics: { readonly step: number; readonly train_loss: number | null; readonly valid_loss: number | null };
}

/** One job's persisted state (`<data-dir>/jobs/<id>.json`); its events live beside it as JSONL. */
export interface JobRecord {
  readonly id: string;
  /** Principal id of the creator: only it and admins see the job and its adapter. */
  readonly owner: string;
  readonly created_at: number;
  /** Orders jobs created within one second. */
  readonly created_ms?: number;
  /** The served base model's id and GGUF path (the path as it was when the job was created). */
  readonly model: string;
  readonly base_path: string;
  readonly training_file: string;
  readonly validation_file: string | null;
  readonly suffix: string | null;
  readonly metadata: Record<string, string> | null;
  readonly training: ResolvedTraining;
  /** The stored adapter the result is written to. */
  readonly adapter: string;
  /** `ft:<base>:<suffix>:<job-id>`: set when the job succeeds. */
  status: JobStatus;
  fine_tuned_model: string | null;
  finished_at: number | null;
  estimated_finish: number | null;
  trained_tokens: number | null;
  error: JobError | null;
  checkpoints: JobCheckpoint[];
}

export interface JobEvent {
  readonly object: "fine_tuning.job.event";
  readonly id: string;
  readonly created_at: number;
  readonly level: "info" | "warn" | "error";
  readonly message: string;
  readonly type: "message" | "metrics";
  readonly data: Record<string, unknown> | null;
}

/**
 * Jobs and their events under `<data-dir>/jobs/`: each state change rewrites `<id>.json` atomically; events are
 * appended to `<id>.events.jsonl` (a torn last line after a crash is skipped on load). Listeners hear each new
 * event (the SSE route).
 */
export class JobStore {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly events = new Map<string, JobEvent[]>();
  private readonly listeners = new Map<string, Set<(event: JobEvent | null) => void>>();
  /** Per job, writes run one after another, so the file ends in the last state and events keep their order. */
  private readonly writes = new Map<string, Promise<void>>();

  private constructor(private readonly dir: string) {}

  static async open(dataDir: string): Promise<JobStore> {
    const store = new JobStore(join(dataDir, "jobs"));
    await mkdir(store.dir, { recursive: true });
    for (const name of await readdir(store.dir)) {
      if (!name.endsWith(".json")) continue;
      try {
        const job = JSON.parse(await readFile(join(store.dir, name), "utf8")) as JobRecord;
        if (!isJobId(job.id)) continue;
        store.jobs.set(job.id, job);
        store.events.set(job.id, await readEvents(join(store.dir, `${job.id}.events.jsonl`)));
      } catch {
        // An unreadable record is skipped; the others load.
      }
    }
    return store;
  }

  get(id: string): JobRecord | undefined {
    return this.jobs.get(id);
  }

  /** Oldest first. */
  list(): JobRecord[] {
    return [...this.jobs.values()].sort(byCreation);
  }

  async add(job: JobRecord): Promise<void> {
    this.jobs.set(job.id, job);
    this.events.set(job.id, []);
    await this.save(job);
  }

  /** Applies `change` to the job and persists it. */
  async update(
    id: string,
    change: Partial<
      Pick<JobRecord, "status" | "fine_tuned_model" | "finished_at" | "estimated_finish" | "trained_tokens" | "error" | "checkpoints">
    >,
  ): Promise<JobRecord> {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    Object.assign(job, change);
    await this.save(job);
    return job;
  }

  /** Oldest first. */
  eventsOf(id: string): readonly JobEvent[] {
    return this.events.get(id) ?? [];
  }

  async addEvent(id: string, fields: Omit<JobEvent, "object" | "id" | "created_at">): Promise<JobEvent> {
    const list = this.events.get(id) ?? [];
    this.events.set(id, list);
    const event: JobEvent = {
      object: "fine_tuning.job.event",
      id: eventId(id, list.length),
      created_at: Math.floor(Date.now() / 1000),
      ...fields,
    };
    list.push(event);
    for (const listener of this.listeners.get(id) ?? []) listener(event);
    await this.serially(id, () => appendFile(join(this.dir, `${id}.events.jsonl`), `${JSON.stringify(event)}\n`));
    return event;
  }

  /** Tells the listeners that no more events come (the job ended and its last event is recorded). */
  endEvents(id: string): void {
    for (const listener of this.listeners.get(id) ?? []) listener(null);
    this.listeners.delete(id);
  }

  /** `listener(null)` after the job's last event (see endEvents). Returns the unsubscribe function. */
  subscribe(id: string, listener: (event: JobEvent | null) => void): () => void {
    const set = this.listeners.get(id) ?? new Set();
    this.listeners.set(id, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  private save(job: JobRecord): Promise<void> {
    const text = `${JSON.stringify(job, null, 2)}\n`;
    return this.serially(job.id, () => writeFileAtomically(join(this.dir, `${job.id}.json`), (file) => file.writeFile(text)));
  }

  private serially(id: string, write: () => Promise<void>): Promise<void> {
    const next = (this.writes.get(id) ?? Promise.resolve()).then(write, write);
    this.writes.set(
      id,
      next.catch(() => undefined),
    );
    return next;
  }
}

async function readEvents(path: string): Promise<JobEvent[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  const events: JobEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      events.push(JSON.parse(line) as JobEvent);
    } catch {
      // a line torn by a crash
    }
  }
  return events;
}
