/**
 * `lori-server serve` in its own process, as users run it, with optional Node flags (e.g. --cpu-prof) and
 * the child's pid (for per-thread CPU time). Run `npm run build` first, unless `sourceRoot` (tsx, no build).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface ServerProcess {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startServerProcess(
  args: string[],
  nodeArgs: string[] = [],
  env: Record<string, string> = {},
  /**
   * `sourceRoot`: run that checkout's CLI from its TypeScript source through tsx (no build; profiles then name
   * src/ files), e.g. this repository or another commit's worktree to compare with. The checkout needs its
   * node_modules.
   */
  options: { sourceRoot?: string } = {},
): Promise<ServerProcess> {
  const entry = options.sourceRoot ? ["--import", "tsx", path.join(options.sourceRoot, "src/cli/main.ts")] : [cli];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, ...entry, "serve", "--port", "0", "--quiet", ...args], {
    ...(options.sourceRoot ? { cwd: options.sourceRoot } : {}),
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let seen = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (chunk: Buffer) => {
      seen = (seen + String(chunk)).slice(-8000);
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`lori-server exited (${code}) before listening:\n${seen}`)));
  });
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
