import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generateBaseCorpus } from "./base-corpus.js";
import { codeTask } from "./code-task.js";
import { mathTask } from "./math-task.js";
import { nluTask } from "./nlu-task.js";
import { safetyTask } from "./safety-task.js";
import { toJsonl, type SplitSizes, type Task, type TaskId } from "./task.js";

/** Every task, in the order `eval --task all` runs them. */
export const TASKS: Readonly<Record<TaskId, Task>> = { math: mathTask, code: codeTask, nlu: nluTask, safety: safetyTask };

export function getTask(id: string): Task | undefined {
  return Object.hasOwn(TASKS, id) ? TASKS[id as TaskId] : undefined;
}

/**
 * Writes `<dir>/<task>.train.jsonl` and `<dir>/<task>.test.jsonl` (readable by `lori-server train --data`),
 * and returns their paths.
 */
export async function writeTaskFiles(task: Task, seed: number, sizes: SplitSizes, dir: string): Promise<{ train: string; test: string }> {
  const splits = task.generate(seed, sizes);
  await mkdir(dir, { recursive: true });
  const files = { train: join(dir, `${task.id}.train.jsonl`), test: join(dir, `${task.id}.test.jsonl`) };
  await writeFile(files.train, toJsonl(splits.train));
  await writeFile(files.test, toJsonl(splits.test));
  return files;
}

/** Writes `<dir>/base.jsonl`: `count` `{"text"}` records of the base corpus. */
export async function writeBaseCorpus(seed: number, count: number, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, "base.jsonl");
  const records = generateBaseCorpus(seed, count);
  await writeFile(file, records.map((r) => JSON.stringify(r)).join("\n") + (records.length > 0 ? "\n" : ""));
  return file;
}
