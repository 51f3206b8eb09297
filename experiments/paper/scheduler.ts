import type { ExperimentConfig } from "./config.js";
import type { LoriCli } from "./lori-commands.js";
import type { Step, StepContext } from "./step.js";
import { readRecord, writeRecord, type RuntimeClock, type WorkPaths } from "./work-dir.js";

/** Runs the steps not finished before, up to `jobs` at once, dependencies first; stores each result as it finishes. */

export interface SchedulerOptions {
  readonly config: ExperimentConfig;
  readonly work: WorkPaths;
  readonly lori: LoriCli;
  readonly keys: ReadonlyMap<string, string>;
  readonly clock: RuntimeClock;
  readonly jobs: number;
  /** Progress lines (stderr in the CLI). */
  readonly log: (line: string) => void;
  /** True once no further step should start (Ctrl-C). */
  readonly stopping: () => boolean;
}

/** A step failed; `cause` says how (a CommandError names the command and ends with its stderr tail). */
export class StepFailedError extends Error {
  constructor(
    readonly step: Step,
    override readonly cause: unknown,
  ) {
    super(`step ${step.id} (${step.label}) failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "StepFailedError";
  }
}

export async function runSteps(steps: readonly Step[], options: SchedulerOptions): Promise<{ ran: number; reused: number }> {
  const { keys, work } = options;
  const results = new Map<string, unknown>();
  const done = new Set<string>();
  for (const s of steps) {
    const record = await readRecord(work, s.id);
    if (record && record.key === keys.get(s.id) && s.deps.every((d) => done.has(d))) {
      results.set(s.id, record.result);
      done.add(s.id);
    }
  }
  const reused = done.size;
  const total = steps.length;
  if (reused > 0) options.log(`resuming: ${reused} of ${total} steps finished earlier`);

  const ctx: StepContext = {
    config: options.config,
    work,
    lori: options.lori,
    result<T>(id: string): T {
      if (!results.has(id)) throw new Error(`result of step ${id} is not available`);
      return results.get(id) as T;
    },
    keyOf(id: string): string {
      const key = keys.get(id);
      if (key === undefined) throw new Error(`step ${id} is not planned`);
      return key;
    },
  };
  const pending = steps.filter((s) => !done.has(s.id));
  const running = new Map<string, Promise<void>>();
  let failure: unknown;
  let finished = reused;

  const start = (s: Step) => {
    const started = performance.now();
    const job = s
      .run(ctx)
      .then(async (result) => {
        const seconds = (performance.now() - started) / 1000;
        await writeRecord(work, { id: s.id, key: keys.get(s.id)!, seconds, finishedAt: new Date().toISOString(), result });
        await options.clock.save();
        results.set(s.id, result);
        done.add(s.id);
        finished++;
        const summary = s.summary ? `, ${s.summary(result)}` : "";
        options.log(`[${finished}/${total}] ${s.label} … ${seconds.toFixed(1)} s${summary}`);
      })
      .catch((error: unknown) => {
        failure ??= error instanceof StepFailedError ? error : new StepFailedError(s, error);
      })
      .finally(() => running.delete(s.id));
    running.set(s.id, job);
  };

  while (pending.length > 0 || running.size > 0) {
    while (failure === undefined && !options.stopping() && running.size < options.jobs) {
      const index = pending.findIndex((s) => s.deps.every((d) => done.has(d)));
      if (index < 0) break;
      start(pending.splice(index, 1)[0]!);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  await options.clock.save();
  if (failure !== undefined) throw failure;
  return { ran: finished - reused, reused };
}
