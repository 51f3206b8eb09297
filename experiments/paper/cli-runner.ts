import { spawn, type ChildProcess } from "node:child_process";
import { access } from "node:fs/promises";
import { fileURLToPath } from "node:url";

/** Runs `node dist/cli/main.js ...` as a child process and captures its output. */

export const CLI_PATH = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export async function checkCliBuilt(): Promise<void> {
  await access(CLI_PATH).catch(() => {
    throw new Error(`${CLI_PATH} is missing: run 'npm run build' first`);
  });
}

/** A command that exited non-zero: the message names the command and ends with its stderr tail. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderrTail: string,
  ) {
    super(`command failed (exit ${exitCode ?? "signal"}): ${command}${stderrTail ? `\n${stderrTail}` : ""}`);
    this.name = "CommandError";
  }
}

/** The child was stopped by Ctrl-C (or by `interruptChildren`). */
export class InterruptedError extends Error {
  constructor(readonly command: string) {
    super(`interrupted: ${command}`);
    this.name = "InterruptedError";
  }
}

export interface CliOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

const running = new Set<ChildProcess>();

/** Forwards SIGINT to every running child (a Ctrl-C on a terminal reaches them by itself). */
export function interruptChildren(): void {
  for (const child of running) child.kill("SIGINT");
}

/** `onStdoutLine` sees each complete stdout line as it arrives (progress of long commands). */
export function runCli(args: readonly string[], cwd: string, onStdoutLine?: (line: string) => void): Promise<CliOutput> {
  const command = `node ${CLI_PATH} ${args.map(quote).join(" ")}`;
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    running.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let partial = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out.push(chunk);
      if (!onStdoutLine) return;
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) onStdoutLine(line);
    });
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", (error) => {
      running.delete(child);
      reject(new CommandError(command, null, error.message));
    });
    child.on("close", (code, signal) => {
      running.delete(child);
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (code === 0) resolvePromise({ stdout, stderr, seconds: (performance.now() - started) / 1000 });
      else if (code === 130 || signal === "SIGINT") reject(new InterruptedError(command));
      else reject(new CommandError(command, code, tail(stderr || stdout, 20)));
    });
  });
}

/** The JSON objects among stdout's lines (other lines are skipped). */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  const objects: Record<string, unknown>[] = [];
  for (const line of stdout.split("\n")) {
    const text = line.trim();
    if (!text.startsWith("{")) continue;
    try {
      objects.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      // not JSON after all
    }
  }
  return objects;
}

/** The whole of stdout as one JSON document. */
export function jsonDocument(stdout: string, command: string): Record<string, unknown> {
  try {
    return JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    throw new CommandError(command, 0, `expected JSON on stdout, got: ${tail(stdout, 5)}`);
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
