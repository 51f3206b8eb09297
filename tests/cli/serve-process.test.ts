import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../support/temp-dir.js";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d));
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  return once(child, "exit").then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

/** Resolves with the URL the server prints; keeps reading stderr so the child never writes to a closed pipe. */
function waitForUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      seen += String(chunk);
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once("exit", () => reject(new Error(`server exited before listening:\n${seen}`)));
  });
}

describe("the lori-server command", () => {
  const dir = useTempDir();

  it("prints help for every subcommand and a one-line error for bad flags", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("serve");
    const serveHelp = await runCli(["serve", "--help"]);
    expect(serveHelp.code).toBe(0);
    for (const flag of [
      "--model",
      "--models-dir",
      "--adapters-dir",
      "--host",
      "--port",
      "--gpu",
      "--gpu-layers",
      "--threads",
      "--context-size",
      "--parallel",
      "--max-queue",
      "--api-key",
      "--chat-template",
    ]) {
      expect(serveHelp.stdout).toContain(flag);
    }
    const bad = await runCli(["serve", "--port", "99999"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toContain("--port");
    const unknown = await runCli(["frobnicate"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("unknown command");
  });

  it("serves the embedded model with no download, then drains on SIGTERM (even a repeated one) and exits 0", async () => {
    const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--models-dir", dir.path, "--threads", "1", "--gpu", "off"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = once(child, "exit");
    const url = await waitForUrl(child);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => (log += d));
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Hello", max_tokens: 300, ignore_eos: true, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read();
    child.kill("SIGTERM");
    // Orchestrators repeat SIGTERM; a second one must not cut the in-flight stream short.
    setTimeout(() => child.kill("SIGTERM"), 100);
    let body = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += new TextDecoder().decode(value);
    }
    // The in-flight stream finished normally despite the SIGTERM.
    expect(body, log).toContain('"finish_reason":"length"');
    expect(body.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const [code] = await exited;
    expect(code).toBe(0);
    expect(log).toMatch(/SIGTERM again, still draining/);
  });

  it("exits at once with 130 on a second SIGINT, without waiting for the drain", async () => {
    const child = spawn(
      process.execPath,
      [cli, "serve", "--port", "0", "--models-dir", dir.path, "--threads", "1", "--gpu", "off", "--drain-timeout-ms", "60000"],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const exited = once(child, "exit");
    const url = await waitForUrl(child);
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Hello", max_tokens: 100_000, ignore_eos: true, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read();
    child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    child.kill("SIGINT");
    const [code] = await exited;
    expect(code).toBe(130);
    expect(performance.now() - started).toBeLessThan(5000);
    await reader.cancel().catch(() => undefined);
  });
});
