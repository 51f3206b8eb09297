import { cpSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evalCommand } from "../../src/cli/commands/eval.js";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { runCommand } from "../support/run-command.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";

// `eval --task` on an in-process server and `eval --url` against a listening one, on the committed demo model:
// every clone runs these (tests/tasks/eval-command.test.ts runs the same on stories260K where ../shared exists).

const runCli = (argv: string[]) => runCommand(evalCommand, argv);

interface Report {
  server: string;
  model: string | null;
  adapter: Array<{ name: string; weight: number }>;
  seed: number;
  tasks: Array<{ task: string; format: string; examples: number; correct: number; accuracy: number }>;
}

describe("lori-server eval --task and --url on the demo model", () => {
  const tmp = useTempDir();
  let server: TestServer;
  let adaptersDir: string;

  beforeAll(async () => {
    // A copy of the demo adapters: the server writes its compiled cache into the adapters dir.
    adaptersDir = join(tmp.path, "adapters");
    cpSync(demoAdaptersDir, adaptersDir, { recursive: true });
    server = await startTestServer({ models: [`lori-demo=${demoModelPath}`], adaptersDir, adaptersPollMs: 0 });
  });
  afterAll(async () => {
    await server?.server.close();
  });

  it("runs the math test split through an in-process server and reports JSON accuracy", async () => {
    const outputs = join(tmp.path, "outputs.jsonl");
    const { code, stdout } = await runCli([
      "--task",
      "math",
      "--limit",
      "3",
      "--json",
      "--model",
      demoModelPath,
      "--adapters-dir",
      adaptersDir,
      "--adapter",
      "math",
      "--gpu",
      "off",
      "--threads",
      "1",
      "--outputs",
      outputs,
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Report;
    expect(report).toMatchObject({
      server: "in-process",
      model: basename(demoModelPath, ".gguf"),
      adapter: [{ name: "math", weight: 1 }],
      seed: 0,
    });
    expect(report.tasks).toHaveLength(1);
    const math = report.tasks[0]!;
    expect(math).toMatchObject({ task: "math", format: "completion", examples: 3 });
    expect(math.accuracy).toBeCloseTo(math.correct / 3);
    const lines = (await readFile(outputs, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; output: string });
    expect(lines.map((l) => l.id)).toEqual(["math-test-0", "math-test-1", "math-test-2"]);
    for (const line of lines) expect(typeof line.output).toBe("string");
  });

  it("evaluates against a running server with --url, prints a table, and fails in one line on an unknown adapter", async () => {
    const { code, stdout } = await runCli(["--task", "nlu", "--limit", "2", "--url", server.baseUrl]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^task\s+examples\s+correct\s+accuracy/m);
    expect(stdout).toMatch(/^nlu\s+2\s+\d\s+[01]\.\d{3}/m);
    await expect(runCli(["--task", "math", "--limit", "1", "--url", server.baseUrl, "--adapter", "missing:0.5"])).rejects.toThrow(
      /answered 404 on math-test-0: .*missing/,
    );
  });

  it("eval --data against --url scores exact matches and reports no loss, saying why", async () => {
    const heldOut = join(import.meta.dirname, "..", "..", "examples", "math.test.jsonl");
    const { code, stdout } = await runCli([
      "--data",
      heldOut,
      "--limit",
      "2",
      "--max-tokens",
      "16",
      "--adapter",
      "math",
      "--url",
      server.baseUrl,
      "--json",
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { data: Record<string, unknown> & { correct: number; exact_match: number } };
    expect(report.data).toMatchObject({ examples: 2, loss_per_token: null, loss_tokens: null });
    expect(report.data.exact_match).toBeCloseTo(report.data.correct / 2);
    expect(report.data.loss_note).toMatch(/--url/);
  });
});
