import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evalCommand, parseAdapter } from "../../src/cli/commands/eval.js";
import { startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { parseTrainingJsonl } from "../../src/train/training-data.js";
import { runCommand } from "../support/run-command.js";

const runCli = (argv: string[]) => runCommand(evalCommand, argv);

interface Report {
  server: string;
  model: string | null;
  adapter: Array<{ name: string; weight: number }>;
  seed: number;
  tasks: Array<{ task: string; format: string; examples: number; correct: number; accuracy: number; groups: Record<string, unknown> }>;
}

describe("lori-server eval: input errors", () => {
  it.each([
    [[], /--task is required/],
    [["--task", "poetry"], /unknown task 'poetry'/],
    [["--task", "math", "--limit", "0"], /--limit must be an integer >= 1/],
    [["--task", "math", "--adapter", "a:0"], /non-zero/],
    [["--task", "math", "--adapter", "a", "--adapter", "a:2"], /listed twice/],
    [["--task", "math", "--url", "ftp://x"], /--url must be an http/],
    [["--task", "math", "--url", "http://127.0.0.1:9", "--gpu", "off"], /--gpu applies to the in-process server/],
    [["--task", "math", "--bogus"], /Unknown option/],
  ])("rejects %j with a one-line error", async (argv, message) => {
    await expect(runCli(argv as string[])).rejects.toThrow(message);
  });

  it("parses NAME[:W] adapters, keeping a non-numeric suffix in the name", () => {
    expect(parseAdapter("math")).toEqual({ name: "math", weight: 1 });
    expect(parseAdapter("safety:0.5")).toEqual({ name: "safety", weight: 0.5 });
    expect(parseAdapter("org:math")).toEqual({ name: "org:math", weight: 1 });
    expect(parseAdapter("m:-1e-1")).toEqual({ name: "m", weight: -0.1 });
  });

  it("writes train and test JSONL the trainer reads with --write-data", async () => {
    const dir = useTempDirNow();
    const { code, stdout } = await runCli(["--task", "math,safety", "--write-data", dir, "--train-size", "12", "--limit", "4"]);
    expect(code).toBe(0);
    expect(stdout).toContain("math.train.jsonl");
    const train = await readFile(join(dir, "safety.train.jsonl"), "utf8");
    expect(parseTrainingJsonl(train, "safety.train.jsonl")).toHaveLength(12);
    expect((await readFile(join(dir, "math.test.jsonl"), "utf8")).trim().split("\n")).toHaveLength(4);
  });
});

const tmpRoot = useTempDir("lori-eval-");
let dirCount = 0;
function useTempDirNow(): string {
  return join(tmpRoot.path, `d${dirCount++}`);
}

describe.skipIf(storiesModelPath === null)("lori-server eval on stories260K", () => {
  let test: TestServer;
  beforeAll(async () => {
    test = await startTestServer({ models: [storiesModelPath!], adaptersDir: join(tmpRoot.path, "adapters") });
  });
  afterAll(async () => {
    await test?.server.close();
  });

  it("runs the math test split through an in-process server and reports JSON accuracy", async () => {
    const outputs = join(tmpRoot.path, "outputs.jsonl");
    const { code, stdout } = await runCli([
      "--task", "math", "--limit", "3", "--json", "--model", storiesModelPath!, "--adapters-dir", join(tmpRoot.path, "adapters"),
      "--gpu", "off", "--threads", "1", "--outputs", outputs,
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Report;
    expect(report).toMatchObject({ server: "in-process", model: "stories260K", adapter: [], seed: 0 });
    expect(report.tasks).toHaveLength(1);
    const math = report.tasks[0]!;
    expect(math).toMatchObject({ task: "math", format: "completion", examples: 3 });
    expect(math.accuracy).toBeGreaterThanOrEqual(0);
    expect(math.accuracy).toBeLessThanOrEqual(1);
    expect(math.accuracy).toBeCloseTo(math.correct / 3);
    const lines = (await readFile(outputs, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { id: string; output: string });
    expect(lines.map((l) => l.id)).toEqual(["math-test-0", "math-test-1", "math-test-2"]);
  });

  it("evaluates against a running server with --url, prints a table, and fails in one line on an unknown adapter", async () => {
    const { code, stdout } = await runCli(["--task", "nlu", "--limit", "2", "--url", test.baseUrl]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^task\s+examples\s+correct\s+accuracy/m);
    expect(stdout).toMatch(/^nlu\s+2\s+\d\s+[01]\.\d{3}/m);
    await expect(runCli(["--task", "math", "--limit", "1", "--url", test.baseUrl, "--adapter", "missing:0.5"])).rejects.toThrow(
      /answered 404 on math-test-0: .*missing/,
    );
  });
});
