import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { TASKS } from "../../src/tasks/tasks.js";
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
      scores: { task: string; adapter: string | null; format: string; accuracy: number; examples: number }[];
    };
    expect(report.profile.name).toBe("smoke");
    for (const task of TASK_IDS) {
      // Completion tasks are scored in both request formats, safety (a chat task) in its own.
      const formats = TASKS[task].format === "completion" ? ["completion", "chat"] : ["chat"];
      for (const adapter of [null, task]) {
        for (const format of formats) {
          const score = report.scores.find((s) => s.task === task && s.adapter === adapter && s.format === format);
          expect(score, `${task} (${format}) with adapter ${adapter}`).toBeDefined();
          expect(score!.examples).toBe(2);
          expect(score!.accuracy).toBeGreaterThanOrEqual(0);
          expect(score!.accuracy).toBeLessThanOrEqual(1);
        }
      }
      // Each completion example is trained on in completion and chat form.
      const records = (await readFile(join(dir.path, "data", `${task}.train-with-chat.jsonl`), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { prompt?: string; messages?: unknown[] });
      const chats = records.filter((r) => r.messages !== undefined).length;
      expect(chats, task).toBe(TASKS[task].format === "completion" ? records.length / 2 : records.length);
      const config = JSON.parse(await readFile(join(dir.path, "adapters", task, "adapter_config.json"), "utf8")) as Record<string, unknown>;
      expect(JSON.stringify(config)).toContain("lori-s");
      expect(JSON.stringify(config)).toContain(`${task}.train-with-chat.jsonl`);
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
