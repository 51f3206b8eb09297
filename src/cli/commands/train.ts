import { DEFAULT_ADAPTERS_DIR, oneLineMessage } from "../../lora/adapter-store.js";
import { TARGET_MODULES, type TargetModule } from "../../lora/target-modules.js";
import type { GpuMode, TrainMethod } from "../../train/native-trainer.js";
import { ProgressBar } from "../../train/progress-bar.js";
import { resumeTraining, trainAdapter, TrainInterrupted, type RunSettings, type TrainProgress, type TrainResult } from "../../train/train-adapter.js";
import { moduleFromShort } from "../../train/trainer-tensors.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server train --base MODEL.gguf --data FILE.jsonl --out NAME [options]
       lori-server train --out NAME --resume [--adapters-dir DIR] [--threads N] [--gpu MODE] [--json]

Trains a LoRI adapter on a frozen llama GGUF base with the native trainer and writes it atomically to
<adapters-dir>/NAME (docs/training.md). Data: JSONL, one record a line, in OpenAI chat format
({"messages": [...]}, assistant turns supervised), {"prompt", "completion"} (as /v1/completions sees the
prompt; completion + EOS supervised) or Alpaca {"instruction", "input", "output"}.

Options:
  --base MODEL.gguf        base model (llama architecture)
  --data FILE.jsonl        training data
  --out NAME               adapter name
  --adapters-dir DIR       adapter store (default ./${DEFAULT_ADAPTERS_DIR}); work files go to DIR/.train/NAME
  --method M               lori-d (default; lori-s with --continue-from), lori-s, lora
  --sparsity S             LoRI-S: fraction of B entries masked out (default 0.9)
  --mask-from ADAPTER      LoRI-S mask: global top-k |B| of this adapter (a LoRI-D adapter of the task)
  --calibrate              LoRI-S mask: train LoRI-D first (same seed), keep its top-k |B|, retrain from zero
  --calibrate-lr LR        learning rate of that LoRI-D phase (default --lr)
  --continue-from ADAPTER  continual learning: keep its A seed, start from its B, train under the new mask;
                           entries outside the mask keep the old values bit for bit
  --rank R                 rank (default 32)
  --alpha A                alpha (default 2 * rank)
  --lr LR                  constant AdamW learning rate (default 1e-4)
  --epochs N | --steps N   training length (default 1 epoch)
  --batch N                sequences per micro-batch (default 1)
  --grad-accum N           micro-batches per optimizer step (default 1)
  --max-len N              truncate sequences to N tokens (default 512)
  --targets LIST           projections, comma-separated from q,k,v,o,gate,up,down (default all)
  --seed N                 seed of A and of the data order (default: fresh random, recorded in the adapter)
  --val-fraction F         records held out for validation (default 0.1)
  --eval-every N           validation loss every N steps (default: only at the end)
  --chat-template T        Jinja chat template (text or a file) for chat data; default the model's own
  --gpu auto|cuda|off      trainer backend (default auto; CUDA is unverified on a GPU)
  --threads N              CPU threads (default all)
  --overwrite              replace an existing adapter NAME (and a stale interrupted run)
  --resume                 continue an interrupted run of NAME (its recorded settings are used)
  --json                   print the trainer's events as JSON lines on stdout
  -h, --help               this help

Ctrl-C stops cleanly: the trainer writes a checkpoint and the command tells how to resume (exit 130).
`;

export const trainCommand: CliCommand = {
  name: "train",
  summary: "Train a LoRI adapter (LoRI-D, LoRI-S, LoRA) on a GGUF base with the native trainer",
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
      overwrite: { type: "boolean" },
      resume: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    if (!v.out) throw new CliError("--out NAME is required");
    const adaptersDir = v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR;
    const gpu = v.gpu === undefined ? undefined : oneOf<GpuMode>("--gpu", v.gpu, ["auto", "cuda", "off"]);
    const threads = int("--threads", v.threads);
    const bar = !v.json && process.stderr.isTTY ? new ProgressBar() : undefined;
    const onProgress = (p: TrainProgress) => {
      if (v.json) process.stdout.write(`${JSON.stringify({ phase: p.phase, ...p.event })}\n`);
      else if (bar) bar.update(p);
      else if (p.event.event === "eval" || p.event.event === "warning") process.stderr.write(`${p.phase}: ${JSON.stringify(p.event)}\n`);
    };
    const run: RunSettings = { ...(gpu ? { gpu } : {}), ...(threads ? { threads } : {}), onProgress };
    let result: TrainResult;
    try {
      if (v.resume) {
        result = await resumeTraining(v.out, adaptersDir, run, v.overwrite ?? false);
      } else {
        if (!v.base) throw new CliError("--base MODEL.gguf is required");
        if (!v.data) throw new CliError("--data FILE.jsonl is required");
        result = await trainAdapter({
          base: v.base,
          data: { file: v.data, ...(v["chat-template"] !== undefined ? { chatTemplate: v["chat-template"] } : {}) },
          name: v.out,
          adaptersDir,
          ...defined({
            method: v.method === undefined ? undefined : oneOf<TrainMethod>("--method", v.method, ["lori-d", "lori-s", "lora"]),
            sparsity: num("--sparsity", v.sparsity),
            maskFrom: v["mask-from"],
            calibrate: v.calibrate,
            continueFrom: v["continue-from"],
            rank: int("--rank", v.rank),
            alpha: num("--alpha", v.alpha),
            lr: num("--lr", v.lr),
            calibrateLr: num("--calibrate-lr", v["calibrate-lr"]),
            epochs: num("--epochs", v.epochs),
            steps: int("--steps", v.steps),
            batch: int("--batch", v.batch),
            gradAccum: int("--grad-accum", v["grad-accum"]),
            maxLen: int("--max-len", v["max-len"]),
            targets: v.targets === undefined ? undefined : targetList(v.targets),
            seed: int("--seed", v.seed, 0),
            valFraction: num("--val-fraction", v["val-fraction"]),
            evalEvery: int("--eval-every", v["eval-every"], 0),
            overwrite: v.overwrite,
          }),
          run,
        });
      }
    } catch (error) {
      bar?.end();
      if (error instanceof TrainInterrupted) {
        process.stderr.write(
          `lori-server: ${error.message}; resume with: lori-server train --out ${v.out} --adapters-dir ${adaptersDir} --resume\n`,
        );
        return 130;
      }
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
    bar?.end();
    const t = result.adapter.config.lori?.training as Record<string, number | null> | undefined;
    const summary = {
      adapter: v.out,
      dir: result.dir,
      method: result.plan.method,
      seed: result.plan.seed,
      steps: t?.steps,
      final_train_loss: t?.final_train_loss,
      final_val_loss: t?.final_val_loss,
      trainable_params: t?.trainable_params,
      tokens_per_s: t?.tokens_per_s,
      peak_rss_mb: t?.peak_rss_mb,
      adapter_bytes: result.adapterBytes,
    };
    if (v.json) process.stdout.write(`${JSON.stringify({ event: "adapter", ...summary })}\n`);
    else {
      const fmt = (x: number | null | undefined) => (typeof x === "number" ? x.toFixed(4) : "n/a");
      process.stdout.write(
        `trained ${v.out} (${summary.method}, seed ${summary.seed}) -> ${summary.dir}: ${summary.steps} steps, ` +
          `train loss ${fmt(summary.final_train_loss)}, val loss ${fmt(summary.final_val_loss)}, ` +
          `${summary.trainable_params} trainable params, ${Math.round(summary.tokens_per_s ?? 0)} tokens/s, ` +
          `peak RSS ${Math.round(summary.peak_rss_mb ?? 0)} MiB, ${summary.adapter_bytes} bytes\n`,
      );
    }
    return 0;
  },
};

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
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) throw new CliError(`${flag} must be an integer >= ${min}, got '${text}'`);
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
