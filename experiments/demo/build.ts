/**
 * `npm run demo:build`: pretrains the demo base model (full fine-tuning of a random llama on the generated base
 * corpus) and trains the four LoRI-S demo adapters on it, every step seeded, then installs them as
 * models/lori-demo.gguf and adapters/{math,code,nlu,safety} (the server's default model and adapters), with the
 * scores in experiments/demo/report.json.
 *
 *   npm run demo:build [-- --work DIR] [--threads N] [--jobs N] [--smoke] [--no-install] [--keep-base]
 *
 * The adapters of the completion tasks train on each prompt in both forms a client may send it: the completion
 * prompt and its chat rendering (chat-rendering.ts), so the README's chat examples answer as its completion
 * examples do. `--keep-base` trains only the adapters, on the committed models/lori-demo.gguf (same base, same
 * fingerprint), and installs only the adapters.
 *
 * Resumable: each finished step leaves its output in the work dir (default .cache/demo/<profile>) and is skipped
 * on a rerun; an interrupted training run continues from its checkpoint. `--smoke` runs the same pipeline on a
 * tiny shape with a few steps (CI), and never installs.
 */
import { cp, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { generateBaseCorpus } from "../../src/tasks/base-corpus.js";
import { TASK_IDS, toJsonl, type Example, type TaskId } from "../../src/tasks/task.js";
import { checkCliBuilt, jsonLines, runCli } from "../paper/cli-runner.js";
import { withChatRenderings } from "./chat-rendering.js";
import { mapConcurrently } from "../../src/tasks/run-eval.js";
import { scoreDemo } from "./scores.js";
import { DEMO_PROFILES, type DemoProfile } from "./profile.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

interface Options {
  readonly work: string;
  readonly threads: number | undefined;
  readonly profile: DemoProfile;
  readonly install: boolean;
  readonly keepBase: boolean;
  /** Adapters trained at once. */
  readonly jobs: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      work: { type: "string" },
      threads: { type: "string" },
      smoke: { type: "boolean" },
      "no-install": { type: "boolean" },
      "keep-base": { type: "boolean" },
      jobs: { type: "string" },
    },
  });
  const profile = values.smoke ? DEMO_PROFILES.smoke : DEMO_PROFILES.demo;
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads > 0))
    throw new Error(`--threads must be a positive integer, got '${values.threads}'`);
  const jobs = values.jobs === undefined ? 1 : Number(values.jobs);
  if (!(Number.isInteger(jobs) && jobs > 0)) throw new Error(`--jobs must be a positive integer, got '${values.jobs}'`);
  return {
    work: resolve(values.work ?? join(repoRoot, ".cache", "demo", profile.name)),
    threads,
    profile,
    install: !values.smoke && !values["no-install"],
    keepBase: values["keep-base"] === true,
    jobs,
  };
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

function log(message: string): void {
  process.stderr.write(`[demo] ${message}\n`);
}

/** Runs `lori-server <args>` unless `output` exists already; returns the command's --json events. */
async function step(label: string, output: string, args: string[], cwd: string): Promise<Record<string, unknown>[]> {
  if (await exists(output)) {
    log(`${label}: done before (${output})`);
    return [];
  }
  log(`${label} ...`);
  const result = await runCli(args, cwd, (line) => reportStep(label, line));
  log(`${label}: ${result.seconds.toFixed(1)} s`);
  return jsonLines(result.stdout);
}

function threadArgs(options: Options): string[] {
  return options.threads === undefined ? [] : ["--threads", String(options.threads)];
}

/** `--keep-base`: the committed demo model, copied into the work dir, stands for the pretraining steps. */
async function committedBase(options: Options): Promise<string> {
  const base = join(options.work, "lori-demo.gguf");
  if (!(await exists(base))) {
    await cp(join(repoRoot, "models", "lori-demo.gguf"), `${base}.tmp`);
    await rename(`${base}.tmp`, base);
  }
  log(`base: the committed models/lori-demo.gguf (--keep-base)`);
  return base;
}

async function pretrainBase(options: Options): Promise<string> {
  const { profile, work } = options;
  const init = join(work, "init.gguf");
  const shape = profile.base;
  await step(
    "random init",
    init,
    [
      "model",
      "create",
      "--out",
      init,
      "--layers",
      String(shape.layers),
      "--embd",
      String(shape.embd),
      "--heads",
      String(shape.heads),
      "--kv-heads",
      String(shape.kvHeads),
      "--ff",
      String(shape.ff),
      "--seed",
      String(profile.seed),
      "--name",
      "lori-demo",
    ],
    work,
  );

  const corpus = join(work, "base-corpus.jsonl");
  if (!(await exists(corpus))) {
    const records = generateBaseCorpus(profile.seed, profile.pretrain.records);
    await writeFile(`${corpus}.tmp`, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
    await rename(`${corpus}.tmp`, corpus);
  }

  const base = join(work, "lori-demo.gguf");
  const p = profile.pretrain;
  const resume = await exists(`${base}.train`);
  const events = await step(
    "pretraining (full fine-tuning of every weight)",
    base,
    resume
      ? ["train", "--method", "full", "--out", base, "--resume", "--json", ...threadArgs(options)]
      : [
          "train",
          "--method",
          "full",
          "--base",
          init,
          "--data",
          corpus,
          "--out",
          base,
          "--steps",
          String(p.steps),
          "--batch",
          String(p.batch),
          "--lr",
          String(p.lr),
          "--seed",
          String(profile.seed),
          "--val-fraction",
          String(p.valFraction),
          "--json",
          ...threadArgs(options),
        ],
    work,
  );
  reportTraining("base", events);
  return base;
}

async function trainAdapters(options: Options, base: string): Promise<string> {
  const { profile, work } = options;
  const data = join(work, "data");
  await step(
    "task data",
    join(data, "safety.train.jsonl"),
    ["eval", "--write-data", data, "--task", "all", "--train-size", String(profile.adapter.trainSize), "--seed", String(profile.dataSeed)],
    work,
  );
  // Completion tasks train on each prompt in completion and chat form (chat tasks have one form).
  const mixed = (task: TaskId) => join(data, `${task}.train-with-chat.jsonl`);
  for (const task of TASK_IDS) {
    if (await exists(mixed(task))) continue;
    const lines = (await readFile(join(data, `${task}.train.jsonl`), "utf8")).split("\n").filter((l) => l.trim() !== "");
    const examples = lines.map((l) => JSON.parse(l) as Example);
    await writeFile(`${mixed(task)}.tmp`, toJsonl(withChatRenderings(examples)));
    await rename(`${mixed(task)}.tmp`, mixed(task));
  }
  const adaptersDir = join(work, "adapters");
  const a = profile.adapter;
  // The adapters are independent: --jobs N trains N at once (on a shared machine, more single-threaded trainers
  // get more of the CPU than one multi-threaded one). Results do not depend on the order.
  await mapConcurrently([...TASK_IDS.entries()], options.jobs, async ([index, task]) => {
    const resume = await exists(join(adaptersDir, ".train", task));
    // Steps scale with the records, so each form of an example is seen as often as one form alone would be.
    const records = (await readFile(mixed(task), "utf8")).split("\n").filter((l) => l.trim() !== "").length;
    const steps = Math.round((a.steps * records) / a.trainSize);
    const events = await step(
      `adapter ${task} (LoRI-S, calibrated mask)`,
      join(adaptersDir, task),
      resume
        ? ["train", "--out", task, "--adapters-dir", adaptersDir, "--resume", "--json", ...threadArgs(options)]
        : [
            "train",
            "--base",
            base,
            "--data",
            mixed(task),
            "--out",
            task,
            "--adapters-dir",
            adaptersDir,
            "--method",
            "lori-s",
            "--calibrate",
            "--sparsity",
            String(a.sparsity),
            "--rank",
            String(a.rank),
            "--steps",
            String(steps),
            "--batch",
            String(a.batch),
            "--lr",
            String(a.lr),
            "--calibrate-lr",
            String(a.calibrateLr),
            "--seed",
            String(profile.seed * 100 + index),
            "--val-fraction",
            "0.05",
            "--json",
            ...threadArgs(options),
          ],
      work,
    );
    reportTraining(task, events);
  });
  return adaptersDir;
}

/** Every 50th training step of a --json train run, as one progress line. */
function reportStep(label: string, line: string): void {
  if (!line.startsWith("{")) return;
  try {
    const e = JSON.parse(line) as { event?: string; phase?: string; step?: number; loss?: number; tokens_per_s?: number };
    if (e.event === "step" && e.step !== undefined && e.step % 50 === 0) {
      log(
        `  ${label}${e.phase ? ` [${e.phase}]` : ""}: step ${e.step}, loss ${e.loss?.toFixed(3)}, ${Math.round(e.tokens_per_s ?? 0)} tok/s`,
      );
    }
  } catch {
    // not an event line
  }
}

function reportTraining(label: string, events: Record<string, unknown>[]): void {
  const done = events.filter((e) => e.event === "done").at(-1);
  if (!done) return;
  const fmt = (x: unknown) => (typeof x === "number" ? x.toFixed(3) : "-");
  log(
    `${label}: final loss ${fmt(done.final_loss)}, eval loss ${fmt(done.eval_loss)}, ${done.trainable_params} trainable, ${fmt(done.tokens_per_s)} tok/s`,
  );
}

/** Every task without adapter and with its own adapter, in each format (scores.ts). */
function evaluate(options: Options, base: string, adaptersDir: string) {
  const { evalSeed, evalLimit } = options.profile;
  return scoreDemo({ model: base, adaptersDir, cwd: options.work, seed: evalSeed, limit: evalLimit, threads: options.threads }, log);
}

/** Copies the base and adapters into models/ and adapters/, replacing earlier demo builds. */
async function install(base: string, adaptersDir: string, options: Options, reportJson: string): Promise<void> {
  if (!options.keepBase) {
    const models = join(repoRoot, "models");
    await mkdir(models, { recursive: true });
    await cp(base, join(models, "lori-demo.gguf.tmp"));
    await rename(join(models, "lori-demo.gguf.tmp"), join(models, "lori-demo.gguf"));
  }
  for (const task of TASK_IDS) {
    const target = join(repoRoot, "adapters", task);
    await rm(target, { recursive: true, force: true });
    await cp(join(adaptersDir, task), target, { recursive: true });
  }
  await writeFile(join(repoRoot, "experiments", "demo", "report.json"), reportJson);
  log(`installed ${options.keepBase ? "" : "models/lori-demo.gguf, "}adapters/{${TASK_IDS.join(",")}} and experiments/demo/report.json`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  await checkCliBuilt();
  await mkdir(options.work, { recursive: true });
  const started = performance.now();
  log(`profile ${options.profile.name}, work dir ${options.work}`);
  const base = options.keepBase ? await committedBase(options) : await pretrainBase(options);
  const adaptersDir = await trainAdapters(options, base);
  const scores = await evaluate(options, base, adaptersDir);
  const seconds = (performance.now() - started) / 1000;
  const report = { profile: options.profile, keepBase: options.keepBase, seconds, scores, base: (await stat(base)).size };
  const reportJson = `${JSON.stringify(report, null, 2)}\n`;
  await writeFile(join(options.work, "report.json"), reportJson);
  if (options.install) await install(base, adaptersDir, options, reportJson);
  log(`done in ${seconds.toFixed(0)} s; report in ${join(options.work, "report.json")}`);
  process.stdout.write(reportJson);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo:build: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
