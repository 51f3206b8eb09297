import { writeFile } from "node:fs/promises";
import { oneLineMessage } from "../../lora/adapter-store.js";
import { EvalError, evaluateTask, startInProcessServer, type AdapterChoice, type EvalTarget, type TaskReport } from "../../tasks/run-eval.js";
import { TASK_IDS, type Task } from "../../tasks/task.js";
import { TASKS, writeTaskFiles } from "../../tasks/tasks.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server eval --task math|code|nlu|safety|all [options]

Scores a model (plus adapters) on the synthetic tasks' test splits (docs/tasks.md) through the real server:
an in-process server on --model (default: the demo model models/lori-demo.gguf, or the random fallback
lori-tiny when it is missing), or a running one at --url. Decoding is
greedy (temperature 0); completion tasks use /v1/completions, chat tasks /v1/chat/completions.

Options:
  --task T                 math, code, nlu, safety or all; repeatable or comma-separated
  --adapter NAME[:W]       apply adapter NAME with weight W (default 1); repeatable: stacked as a weighted sum
  --model PATH             GGUF model of the in-process server; with --url, the model id to send
  --models-dir DIR         where the fallback lori-tiny model is written if the demo model is missing (default ./models)
  --adapters-dir DIR       adapter store of the in-process server (default ./adapters)
  --chat-template T        Jinja chat template (text or a file) for models without one (in-process)
  --gpu auto|cuda|vulkan|metal|off   backend of the in-process server (default auto)
  --threads auto|N         CPU threads of the in-process server (default auto)
  --url URL                evaluate against this running server instead (e.g. http://127.0.0.1:8080)
  --api-key KEY            bearer key for --url
  --seed N                 seed of the generated test split (default 0)
  --limit N                evaluate the first N test examples (default: per task, 40-100)
  --concurrency N          requests in flight (default 4)
  --outputs FILE           write every example's output and verdict as JSONL
  --write-data DIR         instead of evaluating: write DIR/<task>.train.jsonl and .test.jsonl (for
                           'lori-server train --data') with --train-size N (default 1000) and the test size
  --train-size N           train examples for --write-data (default 1000; fewer when a task has fewer)
  --json                   print the report as JSON
  -h, --help               this help

Train and test never share a prompt, for any seed. Exit 0 when the evaluation ran, whatever the accuracy.
`;

export const evalCommand: CliCommand = {
  name: "eval",
  summary: "Score a model and adapters on the synthetic math/code/nlu/safety tasks",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      task: { type: "string", multiple: true },
      adapter: { type: "string", multiple: true },
      model: { type: "string" },
      "models-dir": { type: "string" },
      "adapters-dir": { type: "string" },
      "chat-template": { type: "string" },
      gpu: { type: "string" },
      threads: { type: "string" },
      url: { type: "string" },
      "api-key": { type: "string" },
      seed: { type: "string" },
      limit: { type: "string" },
      concurrency: { type: "string" },
      outputs: { type: "string" },
      "write-data": { type: "string" },
      "train-size": { type: "string" },
      json: { type: "boolean" },
    });
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    const tasks = parseTasks(v.task);
    const seed = int("--seed", v.seed, 0) ?? 0;
    if (seed > 0xffffffff) throw new CliError(`--seed must be below 2^32, got '${v.seed}'`);
    const limit = int("--limit", v.limit, 1);
    const adapter = (v.adapter ?? []).map(parseAdapter);
    if (new Set(adapter.map((a) => a.name)).size !== adapter.length) throw new CliError("--adapter: an adapter is listed twice");
    const concurrency = int("--concurrency", v.concurrency, 1) ?? 4;

    if (v["write-data"] !== undefined) {
      const trainSize = int("--train-size", v["train-size"], 0) ?? 1000;
      for (const task of tasks) {
        const files = await writeTaskFiles(task, seed, { train: trainSize, test: limit ?? task.defaultTestSize }, v["write-data"]).catch((error: unknown) => {
          throw new CliError(oneLineMessage(error), 1);
        });
        process.stdout.write(`${task.id}: ${files.train} ${files.test}\n`);
      }
      return 0;
    }
    if (v.url !== undefined) {
      if (!/^https?:\/\/[^/]/.test(v.url)) throw new CliError(`--url must be an http(s) URL, got '${v.url}'`);
      for (const flag of ["models-dir", "adapters-dir", "chat-template", "gpu", "threads"] as const) {
        if (v[flag] !== undefined) throw new CliError(`--${flag} applies to the in-process server, not to --url`);
      }
    }

    let target: EvalTarget;
    let close = async () => {};
    let serverLabel: string;
    if (v.url !== undefined) {
      target = { baseUrl: v.url, ...(v["api-key"] ? { apiKey: v["api-key"] } : {}), ...(v.model ? { model: v.model } : {}) };
      serverLabel = v.url;
    } else {
      try {
        const server = await startInProcessServer({
          ...(v.model ? { model: v.model } : {}),
          ...(v["models-dir"] ? { modelsDir: v["models-dir"] } : {}),
          ...(v["adapters-dir"] ? { adaptersDir: v["adapters-dir"] } : {}),
          ...(v["chat-template"] !== undefined ? { chatTemplate: v["chat-template"] } : {}),
          ...(v.gpu ? { gpu: v.gpu } : {}),
          ...(v.threads ? { threads: v.threads } : {}),
        });
        target = server;
        close = () => server.close();
        serverLabel = "in-process";
      } catch (error) {
        throw new CliError(oneLineMessage(error), 1);
      }
    }

    const reports: TaskReport[] = [];
    try {
      for (const task of tasks) {
        const { test } = task.generate(seed, { train: 0, test: limit ?? task.defaultTestSize });
        reports.push(await evaluateTask(task, test, target, { adapter, concurrency }));
      }
    } catch (error) {
      throw error instanceof EvalError ? new CliError(error.message, 1) : new CliError(oneLineMessage(error), 1);
    } finally {
      await close();
    }

    if (v.outputs !== undefined) {
      const lines = reports.flatMap((r) => r.outcomes.map((o) => JSON.stringify({ task: r.task, ...o })));
      await writeFile(v.outputs, lines.join("\n") + (lines.length > 0 ? "\n" : ""));
    }
    const summary = {
      server: serverLabel,
      model: target.model ?? null,
      adapter,
      seed,
      tasks: reports.map(({ outcomes: _outcomes, ...r }) => r),
    };
    if (v.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stdout.write(formatTable(summary.model, adapter, reports));
    return 0;
  },
};

function formatTable(model: string | null, adapter: readonly AdapterChoice[], reports: readonly TaskReport[]): string {
  const adapters = adapter.length === 0 ? "(base)" : adapter.map((a) => (a.weight === 1 ? a.name : `${a.name}:${a.weight}`)).join(" + ");
  const rows = reports.map((r) => [
    r.task,
    String(r.examples),
    String(r.correct),
    r.accuracy.toFixed(3),
    Object.values(r.groups)
      .map((g) => `${g.label} ${g.accuracy.toFixed(3)} (${g.correct}/${g.examples})`)
      .join(", "),
  ]);
  const header = ["task", "examples", "correct", "accuracy", "details"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return `model ${model ?? "(server default)"}, adapter ${adapters}\n${[header, ...rows].map(line).join("\n")}\n`;
}

function parseTasks(values: string[] | undefined): Task[] {
  if (!values || values.length === 0) throw new CliError(`--task is required (${TASK_IDS.join(", ")} or all)`);
  const ids = new Set<string>();
  for (const value of values.flatMap((x) => x.split(","))) {
    const id = value.trim();
    if (id === "all") TASK_IDS.forEach((t) => ids.add(t));
    else if ((TASK_IDS as readonly string[]).includes(id)) ids.add(id);
    else throw new CliError(`--task: unknown task '${id}' (use ${TASK_IDS.join(", ")} or all)`);
  }
  return TASK_IDS.filter((t) => ids.has(t)).map((t) => TASKS[t]);
}

/** `NAME` or `NAME:W`; a suffix that is not a number stays part of the name. */
export function parseAdapter(text: string): AdapterChoice {
  const colon = text.lastIndexOf(":");
  const suffix = colon >= 0 ? text.slice(colon + 1) : "";
  const looksNumeric = colon > 0 && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(suffix);
  const name = looksNumeric ? text.slice(0, colon) : text;
  const weight = looksNumeric ? Number(suffix) : 1;
  if (name === "") throw new CliError(`--adapter: empty adapter name in '${text}'`);
  if (!Number.isFinite(weight) || weight === 0) throw new CliError(`--adapter: weight must be a finite non-zero number, got '${suffix}'`);
  return { name, weight };
}

function int(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) throw new CliError(`${flag} must be an integer >= ${min}, got '${text}'`);
  return value;
}
