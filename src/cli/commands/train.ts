import { DEFAULT_ADAPTERS_DIR, oneLineMessage } from "../../lora/adapter-store.js";
import { TARGET_MODULES, type TargetModule } from "../../lora/target-modules.js";
import type { GpuMode, TrainMethod } from "../../train/native-trainer.js";
import { formatAppliedDefaults } from "../../train/method-defaults.js";
import { ProgressBar } from "../../train/progress-bar.js";
import { ProgressLines } from "../../train/progress-lines.js";
import {
  resumeTraining,
  trainAdapter,
  TrainInterrupted,
  type RunSettings,
  type TrainProgress,
  type TrainResult,
} from "../../train/train-adapter.js";
import { resumeFullTraining, trainFull, type TrainFullResult } from "../../train/train-full.js";
import { LOSS_UNITS, type PhaseSummary } from "../../train/train-plan.js";
import { moduleFromShort } from "../../train/trainer-tensors.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server train --base MODEL.gguf --data FILE.jsonl --out NAME [options]
       lori-server train --method full --base MODEL.gguf --data FILE.jsonl --out FILE.gguf [options]
       lori-server train --out NAME|FILE.gguf --resume [--adapters-dir DIR] [--threads N] [--gpu MODE] [--json]

Trains a LoRI adapter on a frozen llama GGUF base with the native trainer and writes it atomically to
<adapters-dir>/NAME, or (--method full) trains every weight and writes a new GGUF model to FILE.gguf
(docs/training.md). Data: JSONL, one record a line, in OpenAI chat format ({"messages": [...]}, assistant
turns supervised), {"prompt", "completion"} (as /v1/completions sees the prompt; completion + EOS supervised),
Alpaca {"instruction", "input", "output"} or {"text"} (pretraining: BOS + text + EOS, special tokens such as
<|im_start|> parsed, every token supervised).

Options:
  --base MODEL.gguf        base model (llama architecture)
  --data FILE.jsonl        training data
  --out NAME|FILE.gguf     adapter name; with --method full the model file to write
  --adapters-dir DIR       adapter store (default ./${DEFAULT_ADAPTERS_DIR}); work files go to DIR/.train/NAME
  --method M               lori-d (default; lori-s with --continue-from), lori-s, lora, dora, full (every
                           weight; work files go to FILE.gguf.train/; no adapter options). dora: A, B and a
                           magnitude per output row; served only as a merged model (export --format merged-gguf)
  --sparsity S             LoRI-S: fraction of B entries masked out (default 0.9)
  --mask-from ADAPTER      LoRI-S mask: global top-k |B| of this adapter (a LoRI-D adapter of the task)
  --calibrate              LoRI-S mask: train LoRI-D first (same seed), keep its top-k |B|, retrain from zero
  --calibrate-lr LR        learning rate of that LoRI-D phase (default 3e-3)
  --continue-from ADAPTER  continual learning: keep its rank, alpha, targets (and A seed), start from its B
                           (and A for lora). lori-s: train under the new mask, entries outside it keep the old
                           values bit for bit; lori-d: all of B trains; lora: needs a LoRA adapter (stored A)
  --rank R                 rank (default 32)
  --alpha A                alpha (default 2 * rank)
  --lr LR                  constant AdamW learning rate (default per method: lori-s 1e-2, lori-d 3e-3,
                           lora and dora 1e-3, full 1e-4; the run prints the defaults it applied)
  --epochs N | --steps N   training length (default 1 epoch)
  --batch N                sequences per micro-batch (default 1)
  --grad-accum N           micro-batches per optimizer step (default 1)
  --max-len N              truncate sequences to N tokens (default 512)
  --targets LIST           projections, comma-separated from q,k,v,o,gate,up,down (default all)
  --seed N                 seed of A and of the data order (full: the data order; default: fresh random,
                           recorded in the adapter)
  --val-fraction F         records held out for validation (default 0.1)
  --eval-every N           validation loss every N steps (default: only at the end)
  --chat-template T        Jinja chat template (text or a file) for chat data; default the model's own
  --gpu auto|cuda|off      trainer backend (default auto; CUDA is unverified on a GPU)
  --threads N              CPU threads (default all)
  --force                  replace an existing adapter NAME or FILE.gguf (and a stale interrupted run);
                           --overwrite is an alias
  --resume                 continue an interrupted run of NAME or FILE.gguf (its recorded settings are used)
  --json                   print the trainer's events as JSON lines on stdout (losses per token in
                           loss_per_token, nats; the trainer's own loss is per sequence)
  -h, --help               this help

Progress goes to stderr: a bar on a terminal, a plain line every ~5 % of a phase otherwise. Losses are means
per supervised token (nats/token). The summary reports each phase (calibrate, train) with its time and tokens/s.
Ctrl-C stops cleanly: the trainer writes a checkpoint and the command tells how to resume (exit 130).
`;

export const trainCommand: CliCommand = {
  name: "train",
  summary: "Train a LoRI adapter (LoRI-D, LoRI-S, LoRA) or fine-tune every weight of a GGUF base with the native trainer",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      base: { type: "string" },
      data: { type: "string" },
      out: { type: "string" },
      "adapters-dir": { type: "string" },
      method: { type: "string" },
      sparsity: { type: "string" },
      "mask-from": { type: "string" },
      calibrate: { type: "boolean" },
      "calibrate-lr": { type: "string" },
      "continue-from": { type: "string" },
      rank: { type: "string" },
      alpha: { type: "string" },
      lr: { type: "string" },
      epochs: { type: "string" },
      steps: { type: "string" },
      batch: { type: "string" },
      "grad-accum": { type: "string" },
      "max-len": { type: "string" },
      targets: { type: "string" },
      seed: { type: "string" },
      "val-fraction": { type: "string" },
      "eval-every": { type: "string" },
      "chat-template": { type: "string" },
      gpu: { type: "string" },
      threads: { type: "string" },
      force: { type: "boolean" },
      overwrite: { type: "boolean" },
      resume: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    // --force is the one name every writing command takes; --overwrite stays as train's older alias.
    const force = v.force === true || v.overwrite === true ? true : undefined;
    if (!v.out) throw new CliError("--out NAME (or FILE.gguf with --method full) is required");
    const method =
      v.method === undefined ? undefined : oneOf<TrainMethod | "full">("--method", v.method, ["lori-d", "lori-s", "lora", "dora", "full"]);
    const outIsModel = v.out.toLowerCase().endsWith(".gguf");
    const full = method === "full" || (v.resume === true && method === undefined && outIsModel);
    if (full) {
      const adapterOnly = [
        "rank",
        "alpha",
        "targets",
        "sparsity",
        "mask-from",
        "calibrate",
        "calibrate-lr",
        "continue-from",
        "adapters-dir",
      ] as const;
      const given = adapterOnly.filter((k) => v[k] !== undefined);
      if (given.length > 0)
        throw new CliError(`--${given[0]} does not apply to --method full (it trains every weight of the base, no adapter)`);
      if (!outIsModel) throw new CliError(`--method full writes a model: --out must be a .gguf path, got '${v.out}'`);
    } else if (outIsModel) {
      throw new CliError(`--out ${v.out} is a model path: add --method full to fine-tune every weight, or name the adapter without .gguf`);
    }
    const adaptersDir = v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR;
    const gpu = v.gpu === undefined ? undefined : oneOf<GpuMode>("--gpu", v.gpu, ["auto", "cuda", "off"]);
    const threads = int("--threads", v.threads);
    // A TTY gets a bar redrawn in place, a log (redirected stderr) plain lines, --json the events on stdout.
    const bar = !v.json && process.stderr.isTTY ? new ProgressBar() : undefined;
    const lines = !v.json && !bar ? new ProgressLines() : undefined;
    const onProgress = (p: TrainProgress) => {
      if (v.json) process.stdout.write(`${JSON.stringify(progressJson(p))}\n`);
      else if (bar) bar.update(p);
      else lines?.update(p);
    };
    const onDefaults = (method: string, applied: Readonly<Record<string, number | string>>) => {
      if (v.json) process.stdout.write(`${JSON.stringify({ event: "defaults", method, applied })}\n`);
      else if (Object.keys(applied).length > 0)
        process.stderr.write(`defaults for ${method}: ${formatAppliedDefaults(applied)} (docs/training.md)\n`);
    };
    const run: RunSettings = { ...(gpu ? { gpu } : {}), ...(threads ? { threads } : {}), onProgress, onDefaults };
    const schedule = () =>
      defined({
        lr: num("--lr", v.lr),
        epochs: num("--epochs", v.epochs),
        steps: int("--steps", v.steps),
        batch: int("--batch", v.batch),
        gradAccum: int("--grad-accum", v["grad-accum"]),
        maxLen: int("--max-len", v["max-len"]),
        seed: int("--seed", v.seed, 0),
        valFraction: num("--val-fraction", v["val-fraction"]),
        evalEvery: int("--eval-every", v["eval-every"], 0),
        overwrite: force,
      });
    const data = () => {
      if (!v.base) throw new CliError("--base MODEL.gguf is required");
      if (!v.data) throw new CliError("--data FILE.jsonl is required");
      return { base: v.base, data: { file: v.data, ...(v["chat-template"] !== undefined ? { chatTemplate: v["chat-template"] } : {}) } };
    };
    let result: TrainResult | TrainFullResult;
    try {
      if (full) {
        result = v.resume
          ? await resumeFullTraining(v.out, run, force ?? false)
          : await trainFull({ ...data(), out: v.out, ...schedule(), run });
      } else if (v.resume) {
        result = await resumeTraining(v.out, adaptersDir, run, force ?? false);
      } else {
        result = await trainAdapter({
          ...data(),
          name: v.out,
          adaptersDir,
          ...schedule(),
          ...defined({
            method: method as TrainMethod | undefined,
            sparsity: num("--sparsity", v.sparsity),
            maskFrom: v["mask-from"],
            calibrate: v.calibrate,
            continueFrom: v["continue-from"],
            rank: int("--rank", v.rank),
            alpha: num("--alpha", v.alpha),
            calibrateLr: num("--calibrate-lr", v["calibrate-lr"]),
            targets: v.targets === undefined ? undefined : targetList(v.targets),
          }),
          run,
        });
      }
    } catch (error) {
      bar?.end();
      if (error instanceof TrainInterrupted) {
        const where = full ? `--out ${v.out}` : `--out ${v.out} --adapters-dir ${adaptersDir}`;
        process.stderr.write(`lori-server: ${error.message}; resume with: lori-server train ${where} --resume\n`);
        return 130;
      }
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
    bar?.end();
    if ("modelBytes" in result) {
      const phase = result.phase;
      const summary = {
        model: result.path,
        method: "full",
        seed: result.plan.seed,
        steps: phase.steps,
        loss_units: LOSS_UNITS,
        final_train_loss: phase.final_train_loss,
        final_val_loss: phase.final_val_loss,
        final_train_loss_per_token: phase.final_train_loss_per_token,
        final_val_loss_per_token: phase.final_val_loss_per_token,
        trainable_params: phase.trainable_params,
        tokens_per_s: phase.tokens_per_s,
        elapsed_s: phase.elapsed_s,
        peak_rss_mb: phase.peak_rss_mb,
        model_bytes: result.modelBytes,
      };
      if (v.json) process.stdout.write(`${JSON.stringify({ event: "model", ...summary })}\n`);
      else {
        process.stdout.write(
          `trained ${summary.model} (full, seed ${summary.seed}): ${phaseLine(phase)}\n` +
            `  ${summary.trainable_params} trainable params, peak RSS ${Math.round(summary.peak_rss_mb)} MiB, ${summary.model_bytes} bytes\n`,
        );
      }
      return 0;
    }
    const t = result.adapter.config.lori?.training as Record<string, number | null> | undefined;
    const summary = {
      adapter: v.out,
      dir: result.dir,
      method: result.plan.method,
      seed: result.plan.seed,
      steps: t?.steps,
      loss_units: LOSS_UNITS,
      final_train_loss: t?.final_train_loss,
      final_val_loss: t?.final_val_loss,
      first_train_loss_per_token: t?.first_train_loss_per_token,
      final_train_loss_per_token: t?.final_train_loss_per_token,
      final_val_loss_per_token: t?.final_val_loss_per_token,
      trainable_params: t?.trainable_params,
      tokens_per_s: t?.tokens_per_s,
      elapsed_s: t?.elapsed_s,
      peak_rss_mb: t?.peak_rss_mb,
      adapter_bytes: result.adapterBytes,
      phases: result.phases.map((p) => ({
        phase: p.phase,
        method: p.method,
        steps: p.steps,
        elapsed_s: p.elapsed_s,
        tokens_per_s: p.tokens_per_s,
        final_train_loss_per_token: p.final_train_loss_per_token,
        final_val_loss_per_token: p.final_val_loss_per_token,
      })),
    };
    if (v.json) process.stdout.write(`${JSON.stringify({ event: "adapter", ...summary })}\n`);
    else {
      process.stdout.write(
        `trained ${v.out} (${summary.method}, seed ${summary.seed}) -> ${summary.dir}\n` +
          result.phases.map((p) => `  ${result.phases.length > 1 ? `${p.phase} (${p.method})` : p.method}: ${phaseLine(p)}\n`).join("") +
          `  ${summary.trainable_params} trainable params, peak RSS ${Math.round(summary.peak_rss_mb ?? 0)} MiB, ${summary.adapter_bytes} bytes\n`,
      );
    }
    return 0;
  },
};

/** A progress event as a --json line: the trainer's event, its phase and, for step and eval, the loss per token. */
function progressJson(p: TrainProgress): Record<string, unknown> {
  const perToken = p.event.event === "step" || p.event.event === "eval" ? { loss_per_token: p.lossPerToken } : {};
  return { phase: p.phase, ...p.event, ...perToken };
}

/** `200 steps in 36.8 s (3714 tokens/s), train loss 2.95 -> 0.12 nats/token, val loss 0.17 nats/token`. */
function phaseLine(p: PhaseSummary): string {
  const fmt = (x: number | null | undefined) => (typeof x === "number" ? x.toFixed(4) : "n/a");
  const perToken = p.final_train_loss_per_token !== null && p.final_train_loss_per_token !== undefined;
  const train = perToken
    ? `train loss ${fmt(p.first_train_loss_per_token)} -> ${fmt(p.final_train_loss_per_token)} nats/token`
    : `train loss ${fmt(p.final_train_loss)} nats/sequence`;
  const val = perToken ? `val loss ${fmt(p.final_val_loss_per_token)} nats/token` : `val loss ${fmt(p.final_val_loss)} nats/sequence`;
  return `${p.steps} steps in ${p.elapsed_s.toFixed(1)} s (${Math.round(p.tokens_per_s)} tokens/s), ${train}, ${val}`;
}

function defined<T extends Record<string, unknown>>(obj: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(obj).filter(([, x]) => x !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new CliError(`${flag} must be one of ${allowed.join(", ")}, got '${value}'`);
  return value as T;
}

function int(flag: string, text: string | undefined, min = 1): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min)
    throw new CliError(`${flag} must be an integer >= ${min}, got '${text}'`);
  return value;
}

function num(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) throw new CliError(`${flag} must be a number, got '${text}'`);
  return value;
}

function targetList(text: string): TargetModule[] {
  const out = text.split(",").map((s) => {
    const name = s.trim();
    const module = moduleFromShort(name) ?? (TARGET_MODULES as readonly string[]).find((m) => m === name);
    if (!module) throw new CliError(`--targets: unknown projection '${name}' (use q,k,v,o,gate,up,down)`);
    return module as TargetModule;
  });
  return [...new Set(out)];
}
