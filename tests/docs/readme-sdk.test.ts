// The README's SDK examples, run as written against the demo model: the Node block is type-checked with the
// project's TypeScript (the cast it shows must be the one that compiles) and executed against a real server,
// and each printed line must equal the answer its `// ...` comment promises. The Python block is syntax-checked.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { DEMO_MODEL_PATH } from "../../src/model/embedded-model.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const README_URL = "http://127.0.0.1:8080/v1";

function sdkBlock(language: "ts" | "python"): string {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("### From the OpenAI SDKs"));
  const fence = "```";
  const match = new RegExp(`${fence}${language}\\n([\\s\\S]*?)${fence}`).exec(section);
  if (!match) throw new Error(`README has no ${language} block under "From the OpenAI SDKs"`);
  return match[1]!;
}

/** What each console.log / print line promises in its trailing comment. */
function promisedOutputs(code: string, printCall: RegExp): string[] {
  return code
    .split("\n")
    .filter((line) => printCall.test(line))
    .map((line) => JSON.parse(/(?:\/\/|#) (".*")\s*$/.exec(line)![1]!) as string);
}

describe.skipIf(!existsSync(DEMO_MODEL_PATH))("README SDK examples", () => {
  let t: TestServer;
  const snippet = join(repoRoot, "tests", "docs", `.readme-sdk-${process.pid}.mts`);

  beforeAll(async () => {
    t = await startTestServer({ adaptersDir: join(repoRoot, "adapters"), adaptersPollMs: 0 });
  });

  afterAll(async () => {
    await rm(snippet, { force: true });
    await t?.server.close();
  });

  it("the Node block type-checks and prints what its comments say", async () => {
    const code = sdkBlock("ts");
    expect(code).toContain(README_URL);
    await writeFile(snippet, code.replace(README_URL, `${t.baseUrl}/v1`));
    const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
    await run(
      process.execPath,
      [
        tsc,
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--skipLibCheck",
        snippet,
      ],
      { cwd: repoRoot },
    );
    const { stdout } = await run(process.execPath, ["--import", "tsx", snippet], { cwd: repoRoot });
    const promised = promisedOutputs(code, /console\.log\(/);
    expect(promised).toEqual([" 8 + 6 = 14", " 8 + 6 = 14"]);
    expect(stdout.trimEnd().split("\n")).toEqual(promised);
  });

  it("the Python block uses extra_body and an adapter as the model, and is valid Python", async () => {
    const code = sdkBlock("python");
    expect(code).toMatch(/extra_body=\{"adapter": \["math"\]\}/);
    expect(code).toMatch(/model="math"/);
    expect(promisedOutputs(code, /print\(/)).toEqual([" 8 + 6 = 14", " 8 + 6 = 14"]);
    const file = join(repoRoot, "tests", "docs", `.readme-sdk-${process.pid}.py`);
    await writeFile(file, code);
    try {
      await run("python3", ["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", file]).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error; // no python3 on this machine: the checks above still ran
      });
    } finally {
      await rm(file, { force: true });
    }
  });
});
