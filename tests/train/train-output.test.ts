// What `lori-server train` prints when its output goes to a log (not a TTY) and with --json: the process is
// spawned (dist/cli/main.js, `npm run build`) so stderr is a pipe, as in CI or `train ... 2> log`.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { useTempDir } from "../support/temp-dir.js";
import { ensureTrainerBuilt, tinyTrainWorkspace, type TinyTrainWorkspace } from "./helpers.js";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cli, "train", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d));
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  return once(child, "exit").then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

const records = Array.from({ length: 24 }, (_, i) => ({ prompt: `Q: ${i % 8} + 1 =\nA:`, completion: ` ${(i % 8) + 1}` }));

describe("train output on a log and as JSON (tiny generated model)", () => {
  const tmp = useTempDir("lori-train-output-");
  let w: TinyTrainWorkspace;
  const common = () => [
    "--base",
    w.model,
    "--data",
    w.data,
    "--adapters-dir",
    w.adapters,
    "--rank",
    "4",
    "--threads",
    "1",
    "--gpu",
    "off",
    "--seed",
    "3",
  ];

  beforeAll(async () => {
    ensureTrainerBuilt();
    w = await tinyTrainWorkspace(tmp.path, records);
  });

  it("prints the applied defaults, plain progress lines in nats/token and each phase's time and tokens/s", async () => {
    const { code, stdout, stderr } = await runCli(["--out", "log", "--method", "lori-s", "--calibrate", "--steps", "40", ...common()]);
    expect(code, stderr).toBe(0);
    const lines = stderr.trim().split("\n");
    expect(lines[0]).toBe("defaults for lori-s: --alpha 8 --lr 0.01 --batch 1 --calibrate-lr 0.003 --sparsity 0.9 (docs/training.md)");
    // No raw JSON on a log: one line every 2 steps (40 / 20) per phase, plus each phase's validation.
    expect(lines.filter((l) => l.startsWith("{"))).toEqual([]);
    const progress = lines.filter((l) =>
      /^(calibrate 1\/2|train 2\/2): step \d+\/40 \(\d+%\), loss \d+\.\d{4} nats\/token, \d+ tokens\/s, [\d.]+ s elapsed, ETA \S+$/.test(l),
    );
    expect(progress).toHaveLength(40);
    expect(
      lines.filter((l) => /^(calibrate 1\/2|train 2\/2): step 40\/40, validation loss \d+\.\d{4} nats\/token \(\d+ sequences\)$/.test(l)),
    ).toHaveLength(2);
    expect(stdout).toMatch(
      /^ {2}calibrate \(lori-d\): 40 steps in [\d.]+ s \(\d+ tokens\/s\), train loss [\d.]+ -> [\d.]+ nats\/token, val loss [\d.]+ nats\/token$/m,
    );
    expect(stdout).toMatch(
      /^ {2}train \(lori-s\): 40 steps in [\d.]+ s \(\d+ tokens\/s\), train loss [\d.]+ -> [\d.]+ nats\/token, val loss [\d.]+ nats\/token$/m,
    );
  });

  it("--json: a defaults event, loss_per_token on step and eval events, and both phases in the adapter event", async () => {
    const { code, stdout, stderr } = await runCli([
      "--out",
      "json",
      "--method",
      "lori-s",
      "--calibrate",
      "--steps",
      "4",
      "--lr",
      "0.02",
      "--json",
      ...common(),
    ]);
    expect(code, stderr).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[0]).toEqual({
      event: "defaults",
      method: "lori-s",
      applied: { alpha: 8, batch: 1, "calibrate-lr": 0.003, sparsity: 0.9 },
    });
    const steps = events.filter((e) => e.event === "step");
    expect(steps).toHaveLength(8);
    for (const step of steps) {
      // Per sequence / per token = supervised tokens per sequence of that step (batch 1: one record's answer + EOS).
      expect(step.targets).toBeGreaterThan(0);
      expect(step.loss_per_token).toBeCloseTo((step.loss as number) / (step.targets as number), 10);
    }
    const evals = events.filter((e) => e.event === "eval");
    expect(evals.map((e) => e.loss_per_token)).toEqual(evals.map((e) => e.nll_per_token));
    const adapter = events.at(-1)!;
    expect(adapter).toMatchObject({ event: "adapter", method: "lori-s", final_val_loss_per_token: evals.at(-1)!.nll_per_token });
    expect((adapter.phases as Array<{ phase: string; tokens_per_s: number; elapsed_s: number }>).map((p) => p.phase)).toEqual([
      "calibrate",
      "train",
    ]);
    for (const p of adapter.phases as Array<{ tokens_per_s: number; elapsed_s: number }>) {
      expect(p.tokens_per_s).toBeGreaterThan(0);
      expect(p.elapsed_s).toBeGreaterThan(0);
    }
  });
});
