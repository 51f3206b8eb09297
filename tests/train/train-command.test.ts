import { existsSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { trainCommand } from "../../src/cli/commands/train.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { resumeTraining, trainAdapter, TrainInterrupted } from "../../src/train/train-adapter.js";
import { workDirFor } from "../../src/train/train-plan.js";
import { useTempDir } from "../support/temp-dir.js";
import { CPU_RUN, ensureTrainerBuilt, tinyTrainWorkspace } from "./helpers.js";
import { runCommand } from "../support/run-command.js";

const runCli = (argv: string[]) => runCommand(trainCommand, argv);

describe("lori-server train on a tiny generated model", () => {
  const tmp = useTempDir("lori-train-cli-");
  const p = { model: "", data: "", adapters: "" };

  beforeAll(async () => {
    ensureTrainerBuilt();
    const records = Array.from({ length: 12 }, (_, i) =>
      i % 3 === 0
        ? {
            messages: [
              { role: "user", content: `hi ${i}` },
              { role: "assistant", content: "hello!" },
            ],
          }
        : i % 3 === 1
          ? { prompt: `count ${i}:`, completion: " 1 2 3" }
          : { instruction: "say ok", output: "ok" },
    );
    Object.assign(p, await tinyTrainWorkspace(tmp.path, records));
  });

  it("trains from all three formats, prints JSON lines and writes the adapter with its lineage", async () => {
    const { code, stdout } = await runCli([
      "--base",
      p.model,
      "--data",
      p.data,
      "--out",
      "cli",
      "--adapters-dir",
      p.adapters,
      "--rank",
      "4",
      "--steps",
      "4",
      "--lr",
      "0.01",
      "--seed",
      "7",
      "--threads",
      "1",
      "--gpu",
      "off",
      "--eval-every",
      "2",
      "--json",
    ]);
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; phase?: string });
    expect(events.filter((e) => e.event === "step")).toHaveLength(4);
    expect(events.some((e) => e.event === "eval")).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: "adapter", adapter: "cli", method: "lori-d", seed: 7 });
    const adapter = await readAdapterDir(join(p.adapters, "cli"));
    expect(adapter.config.lori!.lineage.at(-1)).toMatchObject({ op: "train", data: { file: "data.jsonl", records: 12 } });
    expect((adapter.config.lori!.lineage.at(-1) as unknown as { data: { sha256: string } }).data.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(adapter.modules).toHaveLength(7);
    expect(existsSync(workDirFor(p.adapters, "cli"))).toBe(false);
  });

  it("refuses an existing name and bad options with one-line errors", async () => {
    await expect(runCli(["--base", p.model, "--data", p.data, "--out", "cli", "--adapters-dir", p.adapters])).rejects.toThrow(
      /already exists/,
    );
    await expect(runCli(["--base", p.model, "--data", p.data, "--out", "x", "--method", "lori-s"])).rejects.toThrow("needs a mask");
    await expect(runCli(["--base", p.model, "--data", p.data, "--out", "x", "--targets", "q,zz"])).rejects.toThrow(
      "unknown projection 'zz'",
    );
  });

  it("trains LoRA with a stored dense A", async () => {
    const r = await trainAdapter({
      base: p.model,
      data: { file: p.data },
      name: "lora",
      adaptersDir: p.adapters,
      method: "lora",
      rank: 4,
      steps: 2,
      lr: 0.01,
      run: CPU_RUN,
    });
    expect(r.adapter.modules.every((m) => m.a.kind === "dense")).toBe(true);
    expect(r.adapter.config.lori!.variant).toBe("lora");
  });

  it("stops on interrupt with a checkpoint, and --resume finishes the same run", async () => {
    const abort = new AbortController();
    const options = {
      base: p.model,
      data: { file: p.data },
      name: "resumed",
      adaptersDir: p.adapters,
      rank: 4,
      steps: 400,
      lr: 0.001,
      seed: 3,
    };
    const failure = await trainAdapter({
      ...options,
      run: { ...CPU_RUN, signal: abort.signal, onProgress: (e) => e.event.event === "step" && e.event.step === 2 && abort.abort() },
    }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TrainInterrupted);
    expect(existsSync(join(workDirFor(p.adapters, "resumed"), "train.checkpoint.safetensors"))).toBe(true);
    expect(existsSync(join(p.adapters, "resumed"))).toBe(false);
    await expect(trainAdapter({ ...options, run: CPU_RUN })).rejects.toThrow(/--resume/);
    const steps: number[] = [];
    const result = await resumeTraining("resumed", p.adapters, {
      ...CPU_RUN,
      onProgress: (e) => e.event.event === "step" && steps.push(e.event.step),
    });
    expect(steps[0]).toBeGreaterThan(2);
    expect(steps.at(-1)).toBe(400);
    expect(result.phases[0]!.resumed_from_step).toBeGreaterThanOrEqual(2);
    expect(existsSync(workDirFor(p.adapters, "resumed"))).toBe(false);
  });
});
