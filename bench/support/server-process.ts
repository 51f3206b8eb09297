import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface ServerProcess {
  readonly url: string;
  stop(): Promise<void>;
}

/** `lori-server serve` in its own process, as users run it (run `npm run build` first). */
export async function startServerProcess(args: string[]): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, [cli, "serve", "--port", "0", "--quiet", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let seen = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      seen += String(chunk);
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}) before listening:\n${seen}`)));
  });
  return {
    url,
    async stop() {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export interface StreamTiming {
  readonly ttftMs: number;
  readonly tokens: number;
  /** Decode rate after the first token (tokens/s), the figure comparable with in-process decoding. */
  readonly decodeTokensPerSecond: number;
  readonly totalMs: number;
}

/** One streaming completion; counts tokens from the usage chunk. */
export async function streamCompletion(url: string, body: Record<string, unknown>): Promise<StreamTiming> {
  const start = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let first: number | null = null;
  let last = start;
  let tokens = 0;
  let buffer = "";
  for await (const chunk of response.body) {
    const now = performance.now();
    buffer += decoder.decode(chunk, { stream: true });
    let index: number;
    while ((index = buffer.indexOf("\n\n")) !== -1) {
      const event = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6)) as { choices: Array<{ text: string }>; usage?: { completion_tokens: number } | null };
      if (data.usage) tokens = data.usage.completion_tokens;
      if (data.choices[0]?.text) {
        first ??= now;
        last = now;
      }
    }
  }
  const end = performance.now();
  const firstAt = first ?? end;
  return {
    ttftMs: firstAt - start,
    tokens,
    decodeTokensPerSecond: tokens > 1 ? ((tokens - 1) * 1000) / (last - firstAt) : 0,
    totalMs: end - start,
  };
}
