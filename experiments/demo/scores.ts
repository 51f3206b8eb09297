import { TASKS } from "../../src/tasks/tasks.js";
import { TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import { jsonDocument, runCli } from "../paper/cli-runner.js";
import { scoreChatForm } from "./chat-scores.js";

/** The demo's scoring: each task's test split without adapter and with its own adapter, in both request formats. */
export interface Score {
  readonly task: TaskId;
  readonly adapter: string | null;
  /** The request format: each task's own (through `eval`), or the chat form of a completion task (chat-scores.ts). */
  readonly format: "completion" | "chat";
  readonly accuracy: number;
  readonly examples: number;
}

export interface ScoreOptions {
  /** Base GGUF path. */
  readonly model: string;
  readonly adaptersDir: string;
  /** Working directory of the `eval` runs. */
  readonly cwd: string;
  /** Test split seed (`eval --seed`). */
  readonly seed: number;
  /** `eval --limit`; 0 = each task's default test size. */
  readonly limit: number;
  readonly threads: number | undefined;
}

export async function scoreDemo(options: ScoreOptions, log: (message: string) => void): Promise<Score[]> {
  const scores: Score[] = [];
  for (const adapter of [null, ...TASK_IDS]) {
    const tasks = adapter === null ? TASK_IDS : [adapter];
    const args = [
      "eval",
      "--model",
      options.model,
      "--adapters-dir",
      options.adaptersDir,
      "--task",
      tasks.join(","),
      "--seed",
      String(options.seed),
      "--json",
      ...(options.limit ? ["--limit", String(options.limit)] : []),
      ...(options.threads === undefined ? [] : ["--threads", String(options.threads)]),
    ];
    if (adapter) args.push("--adapter", adapter);
    const result = await runCli(args, options.cwd);
    const report = jsonDocument(result.stdout, "eval") as { tasks: { task: TaskId; accuracy: number; examples: number }[] };
    for (const t of report.tasks)
      scores.push({ task: t.task, adapter, format: TASKS[t.task].format, accuracy: t.accuracy, examples: t.examples });
  }
  scores.push(
    ...(await scoreChatForm({
      model: options.model,
      adaptersDir: options.adaptersDir,
      seed: options.seed,
      limit: options.limit,
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    })),
  );
  for (const s of scores.filter((x) => x.adapter === x.task)) {
    const without = scores.find((x) => x.task === s.task && x.format === s.format && x.adapter === null);
    log(
      `${s.task} (${s.format}): base ${pct(without?.accuracy)}, with adapter '${s.task}' ${pct(s.accuracy)} (${s.examples} test examples)`,
    );
  }
  return scores;
}

const pct = (x: number | undefined) => (x === undefined ? "-" : `${(x * 100).toFixed(1)} %`);
