import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { TASK_IDS } from "../../src/tasks/task.js";
import { useTempDir } from "../support/temp-dir.js";

// `npm run demo:build -- --smoke` end to end into a temp dir: the same pipeline as the committed demo (random
// init, full fine-tuning on the base corpus, four calibrated LoRI-S adapters, evaluation through the server) on a
// one-layer shape with a few steps. Its accuracies mean nothing; what is checked is that every stage ran and
// produced a loadable model and adapters, and that the smoke profile never installs into models/ or adapters/.

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

describe("npm run demo:build -- --smoke", () => {
  const dir = useTempDir("lori-demo-smoke-");

  it("pretrains a base, trains the four adapters, scores them, and reruns without training again", { timeout: 600_000 }, async () => {
    const installed = join(REPO_ROOT, "models", "lori-demo.gguf");
    const before = await stat(installed).then(
      (s) => s.mtimeMs,
      () => null,
    );
    const args = ["--import", "tsx", join(REPO_ROOT, "experiments", "demo", "build.ts"), "--smoke", "--work", dir.path, "--threads", "1"];
    const first = await run(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 << 20 });
    const report = JSON.parse(await readFile(join(dir.path, "report.json"), "utf8")) as {
      profile: { name: string };
      scores: { task: string; adapter: string | null; accuracy: number; examples: number }[];
    };
    expect(report.profile.name).toBe("smoke");
    for (const task of TASK_IDS) {
      for (const adapter of [null, task]) {
        const score = report.scores.find((s) => s.task === task && s.adapter === adapter);
        expect(score, `${task} with adapter ${adapter}`).toBeDefined();
        expect(score!.examples).toBe(2);
        expect(score!.accuracy).toBeGreaterThanOrEqual(0);
        expect(score!.accuracy).toBeLessThanOrEqual(1);
      }
      const config = JSON.parse(await readFile(join(dir.path, "adapters", task, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      expect(JSON.stringify(config)).toContain("lori-s");
    }
    expect(first.stderr).toContain("pretraining");
    expect(
      await stat(installed).then(
        (s) => s.mtimeMs,
        () => null,
      ),
    ).toBe(before);

    const second = await run(process.execPath, args, { cwd: REPO_ROOT, maxBuffer: 16 << 20 });
    expect(second.stderr).toContain("pretraining (full fine-tuning of every weight): done before");
    expect(second.stderr).not.toMatch(/adapter \w+ \(LoRI-S, calibrated mask\): \d/);
  });
});
