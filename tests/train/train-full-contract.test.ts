import { existsSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { trainCommand } from "../../src/cli/commands/train.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { resumeFullTraining, trainFull } from "../../src/train/train-full.js";
import { TrainInterrupted } from "../../src/train/train-common.js";
import { fullWorkDirFor } from "../../src/train/train-plan.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { CPU_RUN, toJsonl } from "./helpers.js";

/**
 * Full fine-tuning against a stand-in trainer that records its config: the TypeScript side of the native
 * contract (keys sent, the model written in the work dir and renamed onto --out, resume, one-line errors)
 * without depending on the C++ side.
 */

const FAKE_TRAINER = `#!/usr/bin/env node
const fs = require("node:fs");
const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
fs.appendFileSync(process.env.FAKE_TRAINER_LOG, JSON.stringify(config) + "\\n");
const emit = (e) => process.stdout.write(JSON.stringify(e) + "\\n");
const start = config.resume && fs.existsSync(config.checkpoint) ? Number(fs.readFileSync(config.checkpoint, "utf8")) : 0;
emit({ event: "start", mode: "train", method: config.method, rank: 0, trainable_params: 1234, backend: "CPU", threads: 1, start_step: start });
const stopAt = Number(process.env.FAKE_TRAINER_STOP_AT || 0);
for (let step = start + 1; step <= config.steps; step++) {
  emit({ event: "step", step, loss: 10 / step, tokens: 8 * step, tokens_per_s: 100, elapsed_s: step / 100 });
  if (step === stopAt && !config.resume) {
    fs.writeFileSync(config.checkpoint, String(step));
    emit({ event: "interrupted", step, checkpoint: config.checkpoint });
    process.exit(130);
  }
}
if (config.eval_shards) emit({ event: "eval", step: config.steps, loss: 0.5, nll_per_token: 0.1, n_seqs: 1, n_targets: 5 });
fs.writeFileSync(config.checkpoint, String(config.steps));
fs.writeFileSync(config.output, "GGUF trained " + config.steps);
emit({ event: "done", mode: "train", steps: config.steps, final_loss: 10 / config.steps, eval_loss: 0.5, trainable_params: 1234, tokens: 80, tokens_per_s: 100, peak_rss_mb: 12, elapsed_s: 0.1, output: config.output });
`;

describe("full fine-tuning (stand-in trainer)", () => {
  const tmp = useTempDir("lori-train-full-contract-");
  const p = { model: "", data: "", log: "" };
  const saved = { bin: process.env.LORI_TRAIN_BIN, log: process.env.FAKE_TRAINER_LOG };
  const configs = async () =>
    (await readFile(p.log, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const cli = (argv: string[]) => runCommand(trainCommand, argv);

  beforeAll(async () => {
    p.model = join(tmp.path, "tiny.gguf");
    p.data = join(tmp.path, "data.jsonl");
    p.log = join(tmp.path, "configs.jsonl");
    await createTinyModel({ out: p.model, layers: 1, embd: 32, heads: 4, kvHeads: 2, ff: 48 });
    await writeFile(p.data, toJsonl(Array.from({ length: 10 }, (_, i) => ({ text: `<|im_start|>user\nline ${i}<|im_end|>\n` }))));
    const bin = join(tmp.path, "fake-trainer.cjs");
    await writeFile(bin, FAKE_TRAINER);
    await chmod(bin, 0o755);
    process.env.LORI_TRAIN_BIN = bin;
    process.env.FAKE_TRAINER_LOG = p.log;
  });
  afterAll(() => {
    for (const [key, value] of [
      ["LORI_TRAIN_BIN", saved.bin],
      ["FAKE_TRAINER_LOG", saved.log],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it("sends the full-training config (no adapter keys), renames the model onto --out and removes the work dir", async () => {
    const out = join(tmp.path, "out.gguf");
    const result = await trainFull({
      base: p.model,
      data: { file: p.data },
      out,
      steps: 3,
      lr: 1e-3,
      batch: 2,
      gradAccum: 2,
      maxLen: 64,
      seed: 5,
      evalEvery: 2,
      run: CPU_RUN,
    });
    const [config] = await configs();
    const workDir = fullWorkDirFor(out);
    expect(config).toEqual({
      mode: "train",
      method: "full",
      model: p.model,
      output: join(workDir, "model.gguf"),
      shards: join(workDir, "train.tokens"),
      eval_shards: join(workDir, "validation.tokens"),
      steps: 3,
      batch: 2,
      grad_accum: 2,
      max_len: 64,
      lr: 1e-3,
      data_seed: 5,
      eval_interval: 2,
      checkpoint: join(workDir, "train.checkpoint.safetensors"),
      resume: false,
      gpu: "off",
      threads: 1,
    });
    expect(await readFile(out, "utf8")).toBe("GGUF trained 3");
    expect(existsSync(workDir)).toBe(false);
    expect(result).toMatchObject({ path: out, modelBytes: "GGUF trained 3".length });
    expect(result.phase).toMatchObject({ method: "full", steps: 3, first_train_loss: 10, final_val_loss: 0.5, trainable_params: 1234 });
    expect(result.plan).toMatchObject({
      method: "full",
      seed: 5,
      data: { file: "data.jsonl", records: 10, trainSequences: 9, validationSequences: 1 },
    });
  });

  it("stops on interrupt with the work dir kept, and --resume through the CLI finishes it", async () => {
    const out = join(tmp.path, "resumed.gguf");
    process.env.FAKE_TRAINER_STOP_AT = "2";
    try {
      const failure = await trainFull({ base: p.model, data: { file: p.data }, out, steps: 4, seed: 1, run: CPU_RUN }).catch(
        (e: unknown) => e,
      );
      expect(failure).toBeInstanceOf(TrainInterrupted);
    } finally {
      delete process.env.FAKE_TRAINER_STOP_AT;
    }
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(fullWorkDirFor(out), "state.json"))).toBe(true);
    await expect(trainFull({ base: p.model, data: { file: p.data }, out, steps: 4, run: CPU_RUN })).rejects.toThrow(/--resume/);
    const { code, stdout } = await cli(["--out", out, "--resume", "--threads", "1", "--gpu", "off", "--json"]);
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.filter((e) => e.event === "step").map((e) => e.step)).toEqual([3, 4]);
    expect(events.at(-1)).toMatchObject({ event: "model", model: out, method: "full", seed: 1, steps: 4, trainable_params: 1234 });
    expect((await configs()).at(-1)).toMatchObject({ method: "full", resume: true, data_seed: 1 });
    expect(await readFile(out, "utf8")).toBe("GGUF trained 4");
    expect(existsSync(fullWorkDirFor(out))).toBe(false);
    await expect(resumeFullTraining(out, CPU_RUN)).rejects.toThrow(/nothing to resume/);
  });

  it("refuses an existing output without --force, and replaces it with --force or its alias --overwrite", async () => {
    const out = join(tmp.path, "exists.gguf");
    await writeFile(out, "old");
    const argv = ["--method", "full", "--base", p.model, "--data", p.data, "--out", out, "--steps", "1", "--threads", "1", "--gpu", "off"];
    await expect(cli(argv)).rejects.toThrow(/exists\.gguf already exists \(use --force/);
    expect(await readFile(out, "utf8")).toBe("old");
    for (const flag of ["--force", "--overwrite"]) {
      await writeFile(out, "old");
      const { code, stdout } = await cli([...argv, flag]);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^trained .*exists\.gguf \(full, seed \d+\): 1 steps/);
      expect(await readFile(out, "utf8")).toBe("GGUF trained 1");
    }
  });

  it("refuses adapter options and non-model outputs with one-line errors", async () => {
    const base = ["--base", p.model, "--data", p.data];
    const out = join(tmp.path, "x.gguf");
    const refuse = async (argv: string[], message: RegExp) => {
      const error = (await cli(argv).catch((e: unknown) => e)) as Error;
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain("\n");
    };
    for (const [flag, value] of [
      ["--rank", "4"],
      ["--alpha", "8"],
      ["--targets", "q"],
      ["--sparsity", "0.5"],
      ["--mask-from", "a"],
      ["--continue-from", "a"],
    ]) {
      await refuse([...base, "--method", "full", "--out", out, flag!, value!], new RegExp(`^${flag} does not apply to --method full`));
    }
    await refuse([...base, "--method", "full", "--out", out, "--calibrate"], /^--calibrate does not apply to --method full/);
    await refuse([...base, "--method", "full", "--out", "name"], /--out must be a \.gguf path/);
    await refuse([...base, "--out", out], /is a model path: add --method full/);
    await refuse([...base, "--method", "full", "--out", p.model, "--overwrite"], /--out must differ from --base/);
    await refuse(["--method", "full", "--out", out, "--data", p.data], /--base MODEL\.gguf is required/);
    await refuse([...base, "--method", "full", "--out", out, "--steps", "2", "--epochs", "1"], /either --steps or --epochs/);
    await refuse(["--out", join(tmp.path, "none.gguf"), "--resume"], /nothing to resume/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(fullWorkDirFor(out))).toBe(false);
  });
});
