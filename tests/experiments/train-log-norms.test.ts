import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CLI_PATH, jsonLines, runCli } from "../../experiments/paper/cli-runner.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { toJsonl } from "../../src/tasks/task.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { useTempDir } from "../support/temp-dir.js";

// The trainer's eval events carry ||B||_F, max|B| and, for LoRA, ||A − A0||_F / ||A0||_F (the paper's training
// logs). Checked against a float64 computation from the adapter the run wrote, on a generated tiny model.

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

async function train(dir: string, name: string, method: string, lr: string): Promise<Record<string, unknown>[]> {
  const args = [
    "train",
    "--base",
    join(dir, "base.gguf"),
    "--data",
    join(dir, "math.jsonl"),
    "--out",
    name,
    "--adapters-dir",
    join(dir, "adapters"),
  ];
  args.push("--method", method, "--steps", "2", "--eval-every", "2", "--val-fraction", "0.2", "--rank", "4", "--batch", "2");
  args.push("--seed", "7", "--lr", lr, "--threads", "1", "--json", "--force");
  const { stdout } = await runCli(args, REPO_ROOT);
  return jsonLines(stdout).filter((e) => e.event === "eval");
}

describe("the trainer's adapter norms in eval events", () => {
  const tmp = useTempDir("lori-train-norms-");

  it("match ||B||, max|B| and LoRA's A drift computed from the written adapters", { timeout: 300_000 }, async () => {
    expect(existsSync(CLI_PATH), `${CLI_PATH} missing: run npm run build`).toBe(true);
    const dir = tmp.path;
    await runCli(
      ["model", "create", "--out", join(dir, "base.gguf"), "--layers", "1", "--embd", "32", "--heads", "2", "--ff", "64", "--seed", "0"],
      REPO_ROOT,
    );
    await writeFile(join(dir, "math.jsonl"), toJsonl(TASKS.math.generate(0, { train: 20, test: 0 }).train));

    const last: Record<string, Record<string, unknown>> = {};
    for (const method of ["lori-d", "lora"]) {
      const [event] = (await train(dir, `n-${method}`, method, "1e-2")).slice(-1);
      last[method] = event!;
      const adapter = await readAdapterDir(join(dir, "adapters", `n-${method}`));
      let sum = 0;
      let max = 0;
      for (const m of adapter.modules) {
        for (const v of m.b) {
          sum += v * v;
          max = Math.max(max, Math.abs(v));
        }
      }
      expect(sum).toBeGreaterThan(0);
      // the same float32 values summed in float64 on both sides: only the summation order differs
      expect(Math.abs((event!.b_norm as number) - Math.sqrt(sum)) / Math.sqrt(sum)).toBeLessThan(1e-9);
      expect(event!.b_max_abs).toBe(max);
      if (method === "lori-d") expect(event!.a_drift).toBeUndefined();
    }

    // A0: the same seed at a learning rate too small to move A (1e-30) stores the initial A to float precision
    const [still] = (await train(dir, "n-lora-still", "lora", "1e-30")).slice(-1);
    expect(still!.a_drift as number).toBeLessThan(1e-6);
    const a0 = await readAdapterDir(join(dir, "adapters", "n-lora-still"));
    const moved = await readAdapterDir(join(dir, "adapters", "n-lora"));
    let d2 = 0;
    let n2 = 0;
    moved.modules.forEach((m, i) => {
      const a = m.a;
      const b = a0.modules[i]!.a;
      if (a.kind !== "dense" || b.kind !== "dense") throw new Error("a LoRA adapter stores its A");
      a.data.forEach((v, j) => {
        d2 += (v - b.data[j]!) ** 2;
        n2 += b.data[j]! ** 2;
      });
    });
    expect(Math.sqrt(d2 / n2)).toBeGreaterThan(1e-4);
    // A0 here is the lr-1e-30 run's A (equal to the true A0 to float rounding): a relative tolerance of 1e-4
    expect(Math.abs((last.lora!.a_drift as number) - Math.sqrt(d2 / n2)) / Math.sqrt(d2 / n2)).toBeLessThan(1e-4);
  });
});
