// The lori-server command as a user types it (dist/cli/main.js in a child process): version, help, and the
// one-line errors of a newcomer's common mistakes.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ERROR_KINDS } from "../../src/errors/error-kinds.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Starts `serve` on a free port, waits for it to listen, stops it with SIGTERM and returns its stderr. */
async function serveLog(extra: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--threads", "1", "--gpu", "off", ...extra], {
    stdio: ["ignore", "ignore", "pipe"],
    env,
  });
  let stderr = "";
  const exited = once(child, "exit");
  await new Promise<void>((resolve, reject) => {
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
      if (/listening on http/.test(stderr)) resolve();
    });
    child.once("exit", () => reject(new Error(`serve exited before listening:\n${stderr}`)));
  });
  child.kill("SIGTERM");
  await exited;
  return stderr;
}

async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d));
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  const [code] = await once(child, "exit");
  return { code: code as number | null, stdout, stderr };
}

describe("lori-server's command surface", () => {
  const tmp = useTempDir();

  it("--version and -V print the package's version", async () => {
    const { version } = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const result = await runCli([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`lori-server ${version}\n`);
    }
  });

  it("help COMMAND prints that command's help, as COMMAND --help does", async () => {
    for (const name of ["train", "serve", "import"]) {
      const viaHelp = await runCli(["help", name]);
      const viaFlag = await runCli([name, "--help"]);
      expect(viaHelp.code).toBe(0);
      expect(viaHelp.stdout).toContain(`Usage: lori-server ${name}`);
      expect(viaHelp.stdout).toBe(viaFlag.stdout);
    }
    for (const name of ["serve", "eval"]) {
      const text = (await runCli([name, "--help"])).stdout;
      expect(text).not.toMatch(/embedded tiny/);
      expect(text).toMatch(/demo model[\s\S]*lori-tiny/);
    }
    const unknown = await runCli(["help", "frobnicate"]);
    expect(unknown.code).toBe(ERROR_KINDS.invalid_request.exitCode);
    expect(unknown.stderr).toBe("lori-server: unknown command 'frobnicate' (see 'lori-server --help')\n");
  });

  it("import of a .gguf file that is not a GGUF LoRA says so in one line, exit 1", async () => {
    const file = join(tmp.path, "x.gguf");
    await writeFile(file, "GGUF");
    const base = join(tmp.path, "base.gguf");
    await createTinyModel({ out: base, layers: 1 });
    const adapters = join(tmp.path, "adapters");
    const broken = await runCli(["import", file, "--name", "x", "--base", base, "--adapters-dir", adapters]);
    expect(broken.code).toBe(1);
    expect(broken.stderr.trim().split("\n")).toHaveLength(1);
    expect(broken.stderr).toMatch(/x\.gguf: cannot import: /);
    expect(broken.stderr).not.toContain("ENOTDIR");
    const model = await runCli(["import", base, "--name", "x", "--base", base, "--adapters-dir", adapters]);
    expect(model.code).toBe(1);
    expect(model.stderr).toBe("lori-server: base.gguf: cannot import: it is a model (general.type 'model'), not a LoRA adapter\n");
  });

  it("serve --gpu metal off macOS is a one-line device_unavailable error, not a CPU server", async () => {
    if (process.platform === "darwin") return;
    const result = await runCli(["serve", "--gpu", "metal", "--port", "0", "--threads", "1"]);
    expect(result.code).toBe(ERROR_KINDS.device_unavailable.exitCode);
    expect(result.stderr).toBe(
      `lori-server: --gpu metal cannot be used: Metal exists only on macOS (this is ${process.platform}); ` +
        "use --gpu auto (CUDA, then Vulkan, then CPU) or --gpu off\n",
    );
  });

  it("serve on a taken port names the port and --port", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const result = await runCli(["serve", "--port", String(port), "--threads", "1", "--gpu", "off", "--quiet"]);
      expect(result.code).toBe(ERROR_KINDS.conflict.exitCode);
      const lines = result.stderr.trim().split("\n");
      expect(lines.at(-1)).toBe(
        `lori-server: port ${port} on 127.0.0.1 is already in use (another lori-server?): stop it, or pick another port ` +
          "with --port N (or LORI_PORT; --port 0 takes any free port)",
      );
      expect(result.stderr).not.toContain("EADDRINUSE");
    } finally {
      blocker.close();
    }
  });

  it("logs JSON lines when stderr is not a terminal, readable lines with --log-format text (or LORI_LOG_FORMAT)", async () => {
    const json = (await serveLog([])).split("\n").filter((l) => l.startsWith("{"));
    const listening = json.map((l) => JSON.parse(l) as { level: string; event: string; url?: string }).find((e) => e.event === "listening");
    expect(listening).toMatchObject({ level: "info", event: "listening", url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });

    for (const [args, env] of [
      [["--log-format", "text"], process.env],
      [[], { ...process.env, LORI_LOG_FORMAT: "text" }],
    ] as const) {
      const text = await serveLog([...args], env);
      expect(text).not.toMatch(/^\{/m);
      expect(text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}listening url=http:\/\/127\.0\.0\.1:\d+ adapters=\[/m);
      expect(text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}model_loaded id=lori-demo /m);
    }
    const bad = await runCli(["serve", "--log-format", "xml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^lori-server: invalid --log-format \/ LORI_LOG_FORMAT: /);
  });
});
