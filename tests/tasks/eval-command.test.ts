import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evalCommand, parseAdapter } from "../../src/cli/commands/eval.js";
import { startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { exactMatch } from "../../src/tasks/file-eval.js";
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
      "--task",
      "math",
      "--limit",
      "3",
      "--json",
      "--model",
      storiesModelPath!,
      "--adapters-dir",
      join(tmpRoot.path, "adapters"),
      "--gpu",
      "off",
      "--threads",
      "1",
      "--outputs",
      outputs,
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
    const lines = (await readFile(outputs, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; output: string });
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

  it("eval --data against --url scores exact matches and reports no loss, saying why", async () => {
    const heldOut = join(import.meta.dirname, "..", "..", "examples", "math.test.jsonl");
    const { code, stdout } = await runCli(["--data", heldOut, "--limit", "2", "--max-tokens", "4", "--url", test.baseUrl, "--json"]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as FileReportJson;
    expect(report.data).toMatchObject({ examples: 2, loss_per_token: null, loss_tokens: null });
    expect(report.data.loss_note).toMatch(/--url/);
  });
});

interface FileReportJson {
  server: string;
  model: string | null;
  adapter: Array<{ name: string; weight: number }>;
  data: {
    file: string;
    examples: number;
    correct: number;
    exact_match: number;
    loss_per_token: number | null;
    loss_tokens: number | null;
    loss_note?: string;
  };
}

describe("lori-server eval --data FILE: input errors", () => {
  async function dataFile(name: string, lines: object[]): Promise<string> {
    const dir = useTempDirNow();
    await mkdir(dir, { recursive: true });
    const file = join(dir, name);
    await writeFile(file, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    return file;
  }

  it("refuses task options, text records, chats not ending with the answer and missing files in one line", async () => {
    const ok = await dataFile("ok.jsonl", [{ prompt: "Q:", completion: " A" }]);
    await expect(runCli(["--data", ok, "--task", "math"])).rejects.toThrow("--task does not apply to --data");
    await expect(runCli(["--task", "math", "--max-tokens", "3"])).rejects.toThrow("--max-tokens applies to --data only");
    await expect(runCli(["--data", ok, "--max-tokens", "0"])).rejects.toThrow("--max-tokens must be an integer >= 1");
    const text = await dataFile("text.jsonl", [{ prompt: "Q:", completion: " A" }, { text: "just text" }]);
    await expect(runCli(["--data", text])).rejects.toThrow('text.jsonl line 2: a {"text"} record has no reference answer');
    const chat = await dataFile("chat.jsonl", [
      {
        messages: [
          { role: "assistant", content: "hi" },
          { role: "user", content: "?" },
        ],
      },
    ]);
    await expect(runCli(["--data", chat])).rejects.toThrow("chat.jsonl line 1: the last message must be the assistant's reference answer");
    await expect(runCli(["--data", join(tmpRoot.path, "missing.jsonl")])).rejects.toThrow(/cannot read .*missing\.jsonl/);
  });

  it("scores an exact match after trimming surrounding whitespace only", () => {
    expect(exactMatch(" 5 + 1 = 6", " 5 + 1 = 6")).toBe(true);
    expect(exactMatch("5 + 1 = 6\n", " 5 + 1 = 6")).toBe(true);
    expect(exactMatch(" 5 + 1 = 6 and more", " 5 + 1 = 6")).toBe(false);
    expect(exactMatch(" 5+1=6", " 5 + 1 = 6")).toBe(false);
  });
});

// The committed demo model and its math adapter: runs on a fresh clone.
describe("lori-server eval --data on the demo model with the shipped examples", () => {
  const demo = join(import.meta.dirname, "..", "..", "models", "lori-demo.gguf");
  const adapters = join(import.meta.dirname, "..", "..", "adapters");
  const heldOut = join(import.meta.dirname, "..", "..", "examples", "math.test.jsonl");
  const evalFile = async (extra: string[], data = heldOut) => {
    const { code, stdout } = await runCli([
      "--data",
      data,
      "--model",
      demo,
      "--adapters-dir",
      adapters,
      "--gpu",
      "off",
      "--threads",
      "1",
      "--json",
      ...extra,
    ]);
    expect(code).toBe(0);
    return JSON.parse(stdout) as FileReportJson;
  };

  it("the math adapter answers most held-out records exactly and lowers the loss per token; the base answers none", async () => {
    const base = await evalFile([]);
    const math = await evalFile(["--adapter", "math"]);
    console.log(
      `[eval --data] examples/math.test.jsonl: base exact ${base.data.exact_match}, loss ${base.data.loss_per_token} nats/token; math exact ${math.data.exact_match}, loss ${math.data.loss_per_token} nats/token`,
    );
    expect(base.data).toMatchObject({ file: "math.test.jsonl", examples: 50, correct: 0 });
    expect(math.data).toMatchObject({ file: "math.test.jsonl", examples: 50 });
    expect(math.data.exact_match).toBeGreaterThanOrEqual(0.7);
    expect(math.data.exact_match).toBeCloseTo(math.data.correct / 50);
    expect(base.data.loss_per_token!).toBeGreaterThan(1);
    expect(math.data.loss_per_token!).toBeLessThan(0.3);
    expect(math.data.loss_tokens).toBe(base.data.loss_tokens);
  });

  it("scores chat records through /v1/chat/completions against the last assistant message", async () => {
    const file = join(tmpRoot.path, "chat.jsonl");
    const hello = (answer: string) => ({
      messages: [
        { role: "user", content: "Hello!" },
        { role: "assistant", content: answer },
      ],
    });
    // The demo model was pretrained on this small talk: it answers the first, never the second.
    await writeFile(
      file,
      `${[hello("Hello! How can I help you?"), hello("Goodbye, see you tomorrow.")].map((r) => JSON.stringify(r)).join("\n")}\n`,
    );
    const run = async (extra: string[]) => (await evalFile(extra, file)).data;
    const both = await run([]);
    expect(both).toMatchObject({ examples: 2, correct: 1, exact_match: 0.5 });
    const first = await run(["--limit", "1"]);
    expect(first).toMatchObject({ examples: 1, correct: 1 });
    // The answer the model gives costs far fewer nats per token than the one it never would.
    expect(first.loss_per_token!).toBeLessThan(both.loss_per_token! / 2);
  });

  it("--limit scores the first N records, and the loss covers the same records", async () => {
    const limited = await evalFile(["--adapter", "math", "--limit", "5", "--outputs", join(tmpRoot.path, "file-outputs.jsonl")]);
    expect(limited.data.examples).toBe(5);
    const outputs = (await readFile(join(tmpRoot.path, "file-outputs.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; expected: string });
    expect(outputs.map((o) => o.id)).toEqual(["line 1", "line 2", "line 3", "line 4", "line 5"]);
    const firstFive = (await readFile(heldOut, "utf8"))
      .trim()
      .split("\n")
      .slice(0, 5)
      .map((l) => (JSON.parse(l) as { completion: string }).completion);
    expect(outputs.map((o) => o.expected)).toEqual(firstFive);
    // " 5 + 1 = 6": the completion's own tokens plus EOS, far fewer than the whole file's 569.
    expect(limited.data.loss_tokens!).toBeLessThan(100);
  });
});
