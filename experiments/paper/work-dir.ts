import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

/** The work dir: made models, data and adapters, plus one JSON record per finished step and the runtime so far. */

export interface WorkPaths {
  readonly root: string;
  readonly data: string;
  readonly adapters: string;
  readonly models: string;
  readonly steps: string;
}

export function workPaths(root: string): WorkPaths {
  const abs = resolve(root);
  return { root: abs, data: join(abs, "data"), adapters: join(abs, "adapters"), models: join(abs, "models"), steps: join(abs, "steps") };
}

export async function createWorkDir(paths: WorkPaths): Promise<void> {
  for (const dir of [paths.root, paths.data, paths.adapters, paths.models, paths.steps]) await mkdir(dir, { recursive: true });
}

export interface StepRecord<R = unknown> {
  readonly id: string;
  /** Hash of the step's spec and its dependencies' keys: a record with another key is stale. */
  readonly key: string;
  readonly seconds: number;
  readonly finishedAt: string;
  readonly result: R;
}

export async function readRecord(paths: WorkPaths, id: string): Promise<StepRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordFile(paths, id), "utf8")) as StepRecord;
  } catch {
    return undefined; // absent, or torn by a crash: the step runs again
  }
}

export async function writeRecord(paths: WorkPaths, record: StepRecord): Promise<void> {
  await writeJsonAtomic(recordFile(paths, record.id), record);
}

const recordFile = (paths: WorkPaths, id: string) => join(paths.steps, `${id}.json`);

let tmpCounter = 0;

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

/** Wall time of all invocations on this work dir: what earlier ones recorded plus this one's so far. */
export class RuntimeClock {
  private readonly started = performance.now();
  private constructor(
    private readonly paths: WorkPaths,
    private readonly earlier: number,
  ) {}

  static async open(paths: WorkPaths): Promise<RuntimeClock> {
    let earlier = 0;
    try {
      const saved = JSON.parse(await readFile(join(paths.root, "runtime.json"), "utf8")) as { seconds?: unknown };
      if (typeof saved.seconds === "number" && Number.isFinite(saved.seconds)) earlier = saved.seconds;
    } catch {
      // first invocation
    }
    return new RuntimeClock(paths, earlier);
  }

  seconds(): number {
    return this.earlier + (performance.now() - this.started) / 1000;
  }

  async save(): Promise<void> {
    await writeJsonAtomic(join(this.paths.root, "runtime.json"), { seconds: this.seconds() });
  }
}
