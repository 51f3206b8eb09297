import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { oneLineMessage, readAdapterRef } from "../../lora/adapter-store.js";
import { evaluateFile, fileExamples, type FileExample, type FileReport } from "../../tasks/file-eval.js";
import {
  EvalError,
  evaluateTask,
  startInProcessServer,
  type AdapterChoice,
  type EvalTarget,
  type TaskReport,
} from "../../tasks/run-eval.js";
import { dataLossPerToken } from "../../train/data-loss.js";
import { readTrainingFile } from "../../train/training-data.js";
import { TASK_IDS, type Task } from "../../tasks/task.js";
import { TASKS, writeTaskFiles } from "../../tasks/tasks.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server eval --task math|code|nlu|safety|all [options]
       lori-server eval --data FILE.jsonl [options]

Scores a model (plus adapters) on the synthetic tasks' test splits (docs/tasks.md), or on your own test file,
through the real server: an in-process server on --model (default: the demo model models/lori-demo.gguf, or the
random fallback lori-tiny when it is missing), or a running one at --url. Decoding is greedy (temperature 0);
completion records use /v1/completions, chat records /v1/chat/completions.

Options:
  --task T                 math, code, nlu, safety or all; repeatable or comma-separated
  --data FILE.jsonl        score your own test file instead, JSONL in the training formats (docs/training.md):
                           exact match (trimmed) of the greedy answer against the completion / output / last
                           assistant message, and (in-process, at most one adapter) the mean loss per supervised
                           token in nats, as 'train' reports its validation loss
  --max-tokens N           --data: generation budget per record (default 64)
  --stop S                 --data: stop sequence, repeatable (default none: the model stops at EOS)
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
  --limit N                evaluate the first N test examples (default: per task, 100-300; --data: all)
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
    const parsed = parseEvalArgs(argv);
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    if (v.data !== undefined) return runFileEval(v, v.data);
    for (const flag of ["max-tokens", "stop"] as const) if (v[flag] !== undefined) throw new CliError(`--${flag} applies to --data only`);
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
        const files = await writeTaskFiles(task, seed, { train: trainSize, test: limit ?? task.defaultTestSize }, v["write-data"]).catch(
          (error: unknown) => {
            throw new CliError(oneLineMessage(error), 1);
          },
        );
        process.stdout.write(`${task.id}: ${files.train} ${files.test}\n`);
      }
      return 0;
    }
    const { target, close, serverLabel } = await openTarget(v);

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

function parseEvalArgs(argv: string[]) {
  return parseCommandArgs(argv, {
    task: { type: "string", multiple: true },
    data: { type: "string" },
    "max-tokens": { type: "string" },
    stop: { type: "string", multiple: true },
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
}

type EvalValues = NonNullable<ReturnType<typeof parseEvalArgs>>["values"];

interface OpenTarget {
  readonly target: EvalTarget;
  readonly close: () => Promise<void>;
  readonly serverLabel: string;
  /** In-process only: what the server loaded, for the loss of --data. */
  readonly local?: { readonly modelPath: string; readonly adaptersDir: string };
}

/** The server to evaluate against: the running one at --url, or an in-process one started here. */
async function openTarget(v: EvalValues): Promise<OpenTarget> {
  if (v.url !== undefined) {
    if (!/^https?:\/\/[^/]/.test(v.url)) throw new CliError(`--url must be an http(s) URL, got '${v.url}'`);
    for (const flag of ["models-dir", "adapters-dir", "chat-template", "gpu", "threads"] as const) {
      if (v[flag] !== undefined) throw new CliError(`--${flag} applies to the in-process server, not to --url`);
    }
    const target = { baseUrl: v.url, ...(v["api-key"] ? { apiKey: v["api-key"] } : {}), ...(v.model ? { model: v.model } : {}) };
    return { target, close: async () => {}, serverLabel: v.url };
  }
  try {
    const server = await startInProcessServer({
      ...(v.model ? { model: v.model } : {}),
      ...(v["models-dir"] ? { modelsDir: v["models-dir"] } : {}),
      ...(v["adapters-dir"] ? { adaptersDir: v["adapters-dir"] } : {}),
      ...(v["chat-template"] !== undefined ? { chatTemplate: v["chat-template"] } : {}),
      ...(v.gpu ? { gpu: v.gpu } : {}),
      ...(v.threads ? { threads: v.threads } : {}),
    });
    return {
      target: server,
      close: () => server.close(),
      serverLabel: "in-process",
      local: { modelPath: server.modelPath, adaptersDir: server.adaptersDir },
    };
  } catch (error) {
    throw new CliError(oneLineMessage(error), 1);
  }
}

/** `eval --data FILE`: exact match of greedy answers to the file's references, and the loss per token. */
async function runFileEval(v: EvalValues, file: string): Promise<number> {
  for (const flag of ["task", "write-data", "train-size", "seed"] as const) {
    if (v[flag] !== undefined) throw new CliError(`--${flag} does not apply to --data (it scores the records of FILE)`);
  }
  const limit = int("--limit", v.limit, 1);
  const maxTokens = int("--max-tokens", v["max-tokens"], 1) ?? 64;
  const concurrency = int("--concurrency", v.concurrency, 1) ?? 4;
  const adapter = (v.adapter ?? []).map(parseAdapter);
  if (new Set(adapter.map((a) => a.name)).size !== adapter.length) throw new CliError("--adapter: an adapter is listed twice");
  const data = await readTrainingFile(file).catch((error: unknown) => {
    throw new CliError(oneLineMessage(error), 1);
  });
  let examples: FileExample[];
  try {
    examples = fileExamples(data.records, data.name).slice(0, limit);
  } catch (error) {
    throw new CliError(oneLineMessage(error), 1);
  }
  const { target, close, serverLabel, local } = await openTarget(v);
  let report: FileReport;
  try {
    report = await evaluateFile(data.name, examples, target, { adapter, concurrency, maxTokens, ...(v.stop ? { stop: v.stop } : {}) });
  } catch (error) {
    throw error instanceof EvalError ? new CliError(error.message, 1) : new CliError(oneLineMessage(error), 1);
  } finally {
    await close();
  }
  const loss = await fileLoss(v, file, examples.length < data.records.length ? examples.length : undefined, adapter, local);
  if (v.outputs !== undefined) {
    const lines = report.outcomes.map((o) => JSON.stringify({ file: report.file, ...o }));
    await writeFile(v.outputs, lines.join("\n") + (lines.length > 0 ? "\n" : ""));
  }
  const { outcomes: _outcomes, ...scores } = report;
  const summary = { server: serverLabel, model: target.model ?? null, adapter, data: { ...scores, ...loss } };
  if (v.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    const adapters = adapter.length === 0 ? "(base)" : adapter.map((a) => (a.weight === 1 ? a.name : `${a.name}:${a.weight}`)).join(" + ");
    const lossText =
      loss.loss_per_token === null
        ? `loss n/a (${loss.loss_note})`
        : `loss ${loss.loss_per_token.toFixed(4)} nats/token over ${loss.loss_tokens} tokens`;
    process.stdout.write(
      `model ${summary.model ?? "(server default)"}, adapter ${adapters}\n` +
        `${report.file}: exact match ${report.exact_match.toFixed(3)} (${report.correct}/${report.examples}), ${lossText}\n`,
    );
  }
  return 0;
}

/** The loss per supervised token of the scored records, or why there is none (it never fails the evaluation). */
async function fileLoss(
  v: EvalValues,
  file: string,
  firstRecords: number | undefined,
  adapter: readonly AdapterChoice[],
  local: OpenTarget["local"],
): Promise<{ loss_per_token: number | null; loss_tokens: number | null; loss_note?: string }> {
  const none = (note: string) => ({ loss_per_token: null, loss_tokens: null, loss_note: note });
  if (!local) return none("needs the in-process server (the adapter files and the model), not --url");
  if (adapter.length > 1) return none("computed for at most one adapter");
  let scored = file;
  let tempDir: string | undefined;
  try {
    if (firstRecords !== undefined) {
      // The loss covers the same records as the exact match: the first --limit ones.
      tempDir = await mkdtemp(join(tmpdir(), "lori-eval-"));
      scored = join(tempDir, basename(file));
      const lines = (await readFile(file, "utf8")).split(/\r?\n/).filter((l) => l.trim() !== "");
      await writeFile(scored, `${lines.slice(0, firstRecords).join("\n")}\n`);
    }
    const chosen = adapter[0]
      ? { adapter: (await readAdapterRef(adapter[0].name, local.adaptersDir)).adapter, weight: adapter[0].weight }
      : undefined;
    const threads = v.threads !== undefined && /^\d+$/.test(v.threads) ? Number(v.threads) : undefined;
    const loss = await dataLossPerToken({
      base: local.modelPath,
      file: scored,
      ...(v["chat-template"] !== undefined ? { chatTemplate: v["chat-template"] } : {}),
      ...(chosen ? { adapter: chosen } : {}),
      run: { ...(v.gpu === "off" ? { gpu: "off" as const } : {}), ...(threads ? { threads } : {}) },
    });
    return { loss_per_token: loss.lossPerToken, loss_tokens: loss.tokens };
  } catch (error) {
    return none(oneLineMessage(error));
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  }
}

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
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
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
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min)
    throw new CliError(`${flag} must be an integer >= ${min}, got '${text}'`);
  return value;
}
