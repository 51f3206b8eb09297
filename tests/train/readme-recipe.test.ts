// The README's "Train your own adapter in two minutes", run as written on the committed demo model and the shipped
// examples/, at one epoch instead of three: the commands are read from the README, so the two cannot drift apart.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { evalCommand } from "../../src/cli/commands/eval.js";
import { trainCommand } from "../../src/cli/commands/train.js";
import { mathTask } from "../../src/tasks/math-task.js";
import { parseTrainingJsonl } from "../../src/train/training-data.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";
import { ensureTrainerBuilt } from "./helpers.js";

const root = join(import.meta.dirname, "..", "..");

/** The `npx lori-server <command> ...` lines of the README section, as argv (the section quotes no arguments). */
async function recipeCommands(): Promise<Map<string, string[]>> {
  const readme = await readFile(join(root, "README.md"), "utf8");
  const start = readme.indexOf("## Train your own adapter in two minutes");
  expect(start).toBeGreaterThanOrEqual(0);
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const commands = new Map<string, string[]>();
  for (const line of section.split("\n")) {
    const match = /^npx lori-server (\w+) (.*)$/.exec(line.trim());
    if (match) commands.set(match[1]!, match[2]!.split(/\s+/));
  }
  return commands;
}

/** Repository-relative paths become absolute (the test's cwd may differ); everything else stays as written. */
const absolute = (args: readonly string[]) => args.map((a) => (/^(models|examples)\//.test(a) ? join(root, a) : a));

function replaceOption(args: readonly string[], flag: string, value: string): string[] {
  const at = args.indexOf(flag);
  expect(at, `${flag} in the README command`).toBeGreaterThanOrEqual(0);
  return [...args.slice(0, at), flag, value, ...args.slice(at + 2)];
}

describe("the README's train-your-own-adapter recipe on the demo model", () => {
  const tmp = useTempDir("lori-recipe-");
  let commands: Map<string, string[]>;

  beforeAll(async () => {
    ensureTrainerBuilt();
    commands = await recipeCommands();
  });

  it("ships examples/ as the math generator's seed-0 splits, prompt and completion only", async () => {
    const { train, test } = mathTask.generate(0, { train: 300, test: 50 });
    for (const [file, expected] of [
      ["math.train.jsonl", train],
      ["math.test.jsonl", test],
    ] as const) {
      const text = await readFile(join(root, "examples", file), "utf8");
      const records = parseTrainingJsonl(text, file);
      expect(records.map((r) => (r.kind === "completion" ? { prompt: r.prompt, completion: r.completion } : r))).toEqual(
        expected.map((e) => ("prompt" in e ? { prompt: e.prompt, completion: e.completion } : e)),
      );
    }
  });

  it("trains (one epoch): the validation loss per token falls from about 5 to below 0.5; eval --data scores the held-out file", async () => {
    const train = commands.get("train")!;
    expect(train).toBeDefined();
    const args = [...absolute(replaceOption(train, "--epochs", "1")), "--adapters-dir", join(tmp.path, "adapters"), "--json"];
    if (!args.includes("--threads")) args.push("--threads", "1"); // the tests share two cores
    const trained = await runCommand(trainCommand, args);
    expect(trained.code).toBe(0);
    const events = trained.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = events.at(-1) as {
      event: string;
      first_train_loss_per_token: number;
      final_val_loss_per_token: number;
      phases: { phase: string; elapsed_s: number }[];
    };
    console.log(
      `[readme recipe, 1 epoch] loss ${summary.first_train_loss_per_token.toFixed(3)} -> val ${summary.final_val_loss_per_token.toFixed(4)} nats/token, phases ${summary.phases.map((p) => `${p.phase} ${p.elapsed_s.toFixed(1)} s`).join(", ")}`,
    );
    expect(summary.event).toBe("adapter");
    // Per token: an answer of ~11 tokens summed would be ~60 nats at the start.
    expect(summary.first_train_loss_per_token).toBeGreaterThan(3);
    expect(summary.first_train_loss_per_token).toBeLessThan(8);
    // The old default (lr 1e-4) ended at 2.50 here; the defaults end near 0.1.
    expect(summary.final_val_loss_per_token).toBeLessThan(0.5);

    const evaluate = commands.get("eval")!;
    expect(evaluate).toBeDefined();
    const scored = await runCommand(evalCommand, [
      ...absolute(evaluate),
      "--adapters-dir",
      join(tmp.path, "adapters"),
      "--gpu",
      "off",
      "--threads",
      "1",
      "--json",
    ]);
    expect(scored.code).toBe(0);
    const report = JSON.parse(scored.stdout) as { data: { examples: number; exact_match: number; loss_per_token: number } };
    console.log(
      `[readme recipe, 1 epoch] held-out exact match ${report.data.exact_match}, loss ${report.data.loss_per_token.toFixed(4)} nats/token`,
    );
    expect(report.data.examples).toBe(50);
    // The base model answers none of them; one epoch already gets most (84 % measured, seed 1).
    expect(report.data.exact_match).toBeGreaterThanOrEqual(0.5);
    expect(report.data.loss_per_token).toBeLessThan(0.5);
  });
});
