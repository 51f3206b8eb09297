import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CLI_PATH } from "../../experiments/paper/cli-runner.js";
import { resolveConfig } from "../../experiments/paper/config.js";
import type { PaperResults } from "../../experiments/paper/results-schema.js";
import { runPaper } from "../../experiments/paper/run-paper.js";
import { checkResults } from "../../experiments/paper/validate.js";
import { useTempDir } from "../support/temp-dir.js";

// `npm run paper -- --config smoke` end to end, into a temp dir: a tiny random base, every experiment (lr sweep,
// single, merge, continual with both mask pairings, interference, the shared-A variant), a few training steps
// each, two tasks. Its numbers mean nothing; what is checked is that every section of results.json is filled and
// consistent, results.md is rendered, and a rerun reuses every finished step.

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

describe("npm run paper -- --config smoke", () => {
  const dir = useTempDir("lori-paper-smoke-");

  it("runs every experiment, writes results.json and results.md, and resumes", { timeout: 600_000 }, async () => {
    expect(existsSync(CLI_PATH), `${CLI_PATH} missing: run npm run build`).toBe(true);
    const config = resolveConfig("smoke");
    const work = join(dir.path, "work");
    const outDir = join(dir.path, "out");
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);

    const started = performance.now();
    const first = await runPaper({ config, repoRoot: REPO_ROOT, work, outDir, log });
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(`paper smoke: ${first.ran} steps in ${seconds.toFixed(1)} s\n`);

    expect(first.interrupted).toBe(false);
    expect(first.reused).toBe(0);
    expect(first.problems).toEqual([]);
    expect(lines.some((l) => /^\[\d+\/\d+\] single lora math seed 1 … [\d.]+ s, acc \d\.\d\d/.test(l))).toBe(true);

    const results = JSON.parse(await readFile(join(outDir, "results.json"), "utf8")) as PaperResults;
    expect(checkResults(results)).toEqual([]);
    expect(results.config.smoke).toBe(true);
    expect(results.config.baseParams).toBeGreaterThan(0);
    const methods = ["full", "lora", "dora", "lori-d", "lori-s"];
    const tasks = ["math", "safety"];
    expect(new Set(results.single.map((r) => r.method))).toEqual(new Set(methods));
    expect(results.baseScores.map((s) => s.task)).toEqual(tasks);
    const perTask = results.single.filter((r) => r.aSharing === "per-task");
    const shared = results.single.filter((r) => r.aSharing === "shared");
    expect(perTask).toHaveLength(methods.length * tasks.length);
    expect(shared.map((r) => r.method).sort()).toEqual(["lori-d", "lori-d", "lori-s", "lori-s"]);
    // the sweep: one per method (smoke: two lrs); every later run uses its method's dev-best lr
    expect(results.sweeps.map((s) => s.method).sort()).toEqual([...methods].sort());
    for (const sweep of results.sweeps) {
      expect(sweep.grid).toEqual(config.sweep.grid[sweep.method]);
      expect(sweep.points).toHaveLength(sweep.grid.length * sweep.tasks.length);
      expect(results.config.learningRates[sweep.method]).toBe(sweep.bestLr);
      for (const r of results.single.filter((x) => x.method === sweep.method)) expect(r.lr).toBe(sweep.bestLr);
    }
    // dev loss logged every logEvery (2) steps and at the end (3), with ||B||, max|B| and LoRA's and DoRA's A drift
    for (const r of results.single) {
      expect(r.log.map((p) => p.step)).toEqual([2, 3]);
      for (const p of r.log) {
        expect(p.bNorm === undefined).toBe(r.method === "full");
        expect(p.aDrift === undefined).toBe(r.method !== "lora" && r.method !== "dora");
      }
    }
    for (const p of results.sweeps.flatMap((s) => s.points)) expect(p.devLoss).not.toBeNull();
    // per-example outcomes for the bootstrap; safety's test split is half harmful
    for (const s of [...results.baseScores, ...results.single.map((r) => r.score)]) expect(s.outcomes).toHaveLength(s.examples);
    expect(results.testGroups.safety).toEqual(["harmful", "benign", "harmful", "benign"]);
    // cat for 3 methods per-task and 2 shared; the ties baseline for LoRA only (baselineMergeMethods)
    expect(results.merges).toHaveLength(3 + 2 + 1);
    expect(results.merges.filter((m) => m.merge === "ties").map((m) => m.method)).toEqual(["lora"]);
    // continual on math: 3 methods per-task, LoRI-D and LoRI-S shared, and the old LoRI-S pairing once
    expect(results.continual).toHaveLength(3 + 2 + 1);
    expect(results.continual.filter((r) => r.maskPairing === "task-A")).toHaveLength(1);
    expect(results.continual.filter((r) => r.method === "lori-s" && r.maskPairing === "same-A")).toHaveLength(2);
    expect(results.interference).toHaveLength(3);
    for (const r of [...results.baseScores, ...results.single.map((s) => s.score), ...results.merges.flatMap((m) => m.scores)]) {
      expect(r.accuracy).toBeGreaterThanOrEqual(0);
      expect(r.accuracy).toBeLessThanOrEqual(1);
    }
    // LoRI-S trains only the unmasked ~10 % of B.
    const params = (method: string) => results.single.find((r) => r.method === method && r.task === "math")!.trainableParams;
    expect(params("lori-s")).toBeLessThan(params("lori-d") * 0.2);
    expect(results.interference.filter((r) => r.method === "lori-s").every((r) => r.maskJaccard !== null)).toBe(true);
    expect(results.interference.filter((r) => r.method !== "lori-s").every((r) => r.maskJaccard === null)).toBe(true);
    // DoRA is scored as its adapter merged into the base (no GGUF LoRA expresses it): the merged models are kept
    for (const task of tasks) expect(existsSync(join(work, "models", `dora-${task}-s1.gguf`))).toBe(true);
    expect(params("dora")).toBeGreaterThan(params("lora"));

    const markdown = await readFile(join(outDir, "results.md"), "utf8");
    expect(markdown).toMatch(/^# /);
    expect(markdown.length).toBeGreaterThan(500);
    expect(markdown).toContain("## The paper's claims, measured");
    expect(markdown).toContain("## Continual LoRI-S: the mask pairing fix");

    // Everything finished is reused: a rerun runs no step and keeps the results.
    const second = await runPaper({ config, repoRoot: REPO_ROOT, work, outDir, log });
    expect(second.ran).toBe(0);
    expect(second.reused).toBe(first.ran);
    expect(second.results!.single).toEqual(first.results!.single);
    expect(second.results!.runtimeSeconds).toBeGreaterThanOrEqual(first.results!.runtimeSeconds);
  });
});
