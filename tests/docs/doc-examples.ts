import { readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * The request examples of README.md and docs/*.md, read from the Markdown as a reader copies them:
 * - every `curl ... /v1/completions` or `/v1/chat/completions` command with a `-d '<json>'` body, with the answer
 *   its `# -> "text": "..."` / `# -> "content": "..."` comment promises when it has one;
 * - every `prompt` → `answer` pair of the task table in docs/tasks.md, which is sent as that task's `eval` sends
 *   it (completion tasks to /v1/completions with the task's stop and budget, safety as a chat), with its adapter.
 */
export interface DocExample {
  /** `file:line`, to name the example in failures. */
  readonly where: string;
  readonly route: "/v1/completions" | "/v1/chat/completions";
  readonly body: Record<string, unknown>;
  /** The answer the doc shows for it, when it shows one. */
  readonly claim?: string;
}

export function markdownFiles(repoRoot: string): string[] {
  const docs = readdirSync(join(repoRoot, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs.sort()];
}

const lineOf = (text: string, index: number) => text.slice(0, index).split("\n").length;

/** The curl examples of one Markdown text. */
export function curlExamples(file: string, text: string): DocExample[] {
  const out: DocExample[] = [];
  for (const match of text.matchAll(/curl\b/g)) {
    const start = match.index;
    const bodyStart = text.indexOf("-d '", start);
    if (bodyStart < 0) continue;
    // Only a body of the same command: the command may continue over lines ending in a backslash.
    const command = text.slice(start, bodyStart);
    if (/[^\\]\n/.test(command)) continue;
    const route = /\/v1\/chat\/completions\b/.test(command)
      ? "/v1/chat/completions"
      : /\/v1\/completions\b/.test(command)
        ? "/v1/completions"
        : null;
    if (route === null) continue;
    const bodyEnd = text.indexOf("'", bodyStart + 4);
    const where = `${file}:${lineOf(text, start)}`;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text.slice(bodyStart + 4, bodyEnd)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`${where}: the curl body is not JSON: ${(error as Error).message}`);
    }
    const nextLine = text.slice(bodyEnd + 1).split("\n")[1] ?? "";
    const claimed = /^\s*# -> "(?:text|content)": ("(?:[^"\\]|\\.)*")/.exec(nextLine);
    out.push({ where, route, body, ...(claimed ? { claim: JSON.parse(claimed[1]!) as string } : {}) });
  }
  return out;
}

export interface TaskTableExample {
  readonly where: string;
  readonly task: string;
  /** The prompt (completion tasks) or the user message (safety), `\n` escapes resolved. */
  readonly prompt: string;
  readonly claim: string;
}

/** The `prompt` → `answer` pairs of the task table (rows `| \`task\` | format | examples | scorer |`). */
export function taskTableExamples(file: string, text: string): TaskTableExample[] {
  const out: TaskTableExample[] = [];
  for (const [index, line] of text.split("\n").entries()) {
    const row = /^\| `(\w+)` \| [^|]* \| (.*?) \| [^|]*\|\s*$/.exec(line.replace(/\\\|/g, "/"));
    if (!row) continue;
    for (const pair of row[2]!.matchAll(/`([^`]+)` → `([^`]+)`/g)) {
      const unescape = (s: string) => JSON.parse(`"${s.replace(/"/g, '\\"')}"`) as string;
      out.push({ where: `${file}:${index + 1}`, task: row[1]!, prompt: unescape(pair[1]!), claim: unescape(pair[2]!) });
    }
  }
  return out;
}
