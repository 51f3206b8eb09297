import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CONFIG_FILE, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { CLI_PATH, CommandError } from "./cli-runner.js";

/**
 * One `lori-server serve` on the base model for all evals of a run (`eval --url`): each eval then skips loading
 * llama.cpp and the model, which is most of its cost on small models. The server rescans the adapter store, so
 * adapters trained after it started are served; `waitFor` makes sure it serves their current contents.
 */

export interface EvalServerOptions {
  readonly cwd: string;
  readonly model: string;
  readonly adaptersDir: string;
  readonly threads: number;
  readonly gpu?: string;
}

const POLL_MS = 100;
const START_TIMEOUT_MS = 120_000;
const ADAPTER_TIMEOUT_MS = 30_000;

export class EvalServer {
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    /** The model id clients send. */
    readonly modelId: string,
    private readonly adaptersDir: string,
  ) {
    child.once("exit", () => (this.exited = true));
  }

  static start(o: EvalServerOptions): Promise<EvalServer> {
    const args = ["serve", "--model", o.model, "--adapters-dir", o.adaptersDir, "--port", "0", "--host", "127.0.0.1"];
    args.push("--threads", `${o.threads}`, "--adapters-poll-ms", `${POLL_MS}`, "--quiet", ...(o.gpu ? ["--gpu", o.gpu] : []));
    const command = `node ${CLI_PATH} ${args.join(" ")}`;
    const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd: o.cwd, stdio: ["ignore", "ignore", "pipe"] });
    return new Promise((resolvePromise, reject) => {
      let stderr = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new CommandError(command, null, `no 'listening on' line after ${START_TIMEOUT_MS / 1000} s\n${stderr.slice(-2000)}`));
      }, START_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        stderr += chunk.toString("utf8");
        const match = /listening on (\S+) \(models: ([^,;)]+)/.exec(stderr);
        if (!match) return;
        clearTimeout(timer);
        child.stderr!.off("data", onData);
        child.stderr!.resume(); // keep draining: a full pipe would block the server
        resolvePromise(new EvalServer(child, match[1]!, match[2]!, o.adaptersDir));
      };
      child.stderr!.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new CommandError(command, code, stderr.trimEnd().split("\n").slice(-20).join("\n")));
      });
    });
  }

  /** Waits until the server serves exactly the stored contents of these adapters. */
  async waitFor(names: readonly string[]): Promise<void> {
    const deadline = Date.now() + ADAPTER_TIMEOUT_MS;
    for (const name of names) {
      const want = await adapterHash(join(this.adaptersDir, name));
      for (;;) {
        if (this.exited) throw new Error(`the eval server (${this.url}) exited`);
        const response = await fetch(`${this.url}/adapters/${encodeURIComponent(name)}`).catch(() => undefined);
        if (response?.ok && ((await response.json()) as { hash?: string }).hash === want) break;
        if (Date.now() > deadline)
          throw new Error(`the eval server did not pick up adapter '${name}' within ${ADAPTER_TIMEOUT_MS / 1000} s`);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** The adapter registry's content hash: sha256 of the config file, then the weights file. */
async function adapterHash(dir: string): Promise<string> {
  const hash = createHash("sha256");
  hash.update(await readFile(join(dir, CONFIG_FILE)));
  hash.update(await readFile(join(dir, WEIGHTS_FILE)));
  return hash.digest("hex");
}
