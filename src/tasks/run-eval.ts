import { resolveServeConfig } from "../config/serve-config.js";
import { startServer } from "../server/start-server.js";
import { isChatExample, promptMessages, referenceAnswer, type ChatMessage, type Example, type Task } from "./task.js";

/** Runs a task's test split through a real server (HTTP, greedy decoding) and scores the answers. */

export interface AdapterChoice {
  readonly name: string;
  readonly weight: number;
}

export interface EvalTarget {
  /** Server root, e.g. `http://127.0.0.1:8080` (no `/v1`). */
  readonly baseUrl: string;
  readonly apiKey?: string;
  /** The `model` field; the server's first model when absent. */
  readonly model?: string;
}

export interface GroupReport {
  readonly label: string;
  readonly examples: number;
  readonly correct: number;
  readonly accuracy: number;
}

export interface ExampleOutcome {
  readonly id: string;
  readonly group?: string;
  readonly expected: string;
  readonly output: string;
  readonly correct: boolean;
}

export interface TaskReport {
  readonly task: string;
  readonly format: Task["format"];
  readonly examples: number;
  readonly correct: number;
  /** correct / examples, in [0, 1] (0 for no examples). */
  readonly accuracy: number;
  /** Per group (safety: harmful -> refusal rate, benign -> answer rate). */
  readonly groups: Readonly<Record<string, GroupReport>>;
  readonly outcomes: readonly ExampleOutcome[];
}

/** A server failure or refusal while evaluating; the message is one line. */
export class EvalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EvalError";
  }
}

export interface EvaluateOptions {
  readonly adapter: readonly AdapterChoice[];
  /** Requests in flight at once (default 4). */
  readonly concurrency?: number;
  /** Per request (default 120000). */
  readonly requestTimeoutMs?: number;
}

export async function evaluateTask(
  task: Task,
  examples: readonly Example[],
  target: EvalTarget,
  options: EvaluateOptions,
): Promise<TaskReport> {
  const outcomes = await mapConcurrently(examples, options.concurrency ?? 4, async (example): Promise<ExampleOutcome> => {
    const output = await generate(task, example, target, options);
    const correct = await task.score(example, output);
    return { id: example.id, ...(example.group ? { group: example.group } : {}), expected: referenceAnswer(example), output, correct };
  });
  return summarise(task, outcomes);
}

export function summarise(task: Task, outcomes: readonly ExampleOutcome[]): TaskReport {
  const rate = (correct: number, n: number) => (n === 0 ? 0 : correct / n);
  const groups: Record<string, GroupReport> = {};
  const present = new Set(outcomes.flatMap((o) => (o.group ? [o.group] : [])));
  const order = [...Object.keys(task.groupLabels ?? {}), ...[...present].sort()];
  for (const name of new Set(order.filter((g) => present.has(g)))) {
    const members = outcomes.filter((o) => o.group === name);
    const correct = members.filter((o) => o.correct).length;
    groups[name] = { label: task.groupLabels?.[name] ?? name, examples: members.length, correct, accuracy: rate(correct, members.length) };
  }
  const correct = outcomes.filter((o) => o.correct).length;
  return {
    task: task.id,
    format: task.format,
    examples: outcomes.length,
    correct,
    accuracy: rate(correct, outcomes.length),
    groups,
    outcomes,
  };
}

function generate(task: Task, example: Example, target: EvalTarget, options: EvaluateOptions): Promise<string> {
  return generateText(
    {
      id: example.id,
      ...(isChatExample(example) ? { messages: promptMessages(example) } : { prompt: example.prompt }),
      maxTokens: task.maxTokens,
      ...(task.stop ? { stop: task.stop } : {}),
    },
    target,
    options,
  );
}

/** One greedy generation: a prompt goes to /v1/completions, messages to /v1/chat/completions. */
export interface GenerationRequest {
  /** Names the example in error messages. */
  readonly id: string;
  readonly prompt?: string;
  readonly messages?: readonly ChatMessage[];
  readonly maxTokens: number;
  readonly stop?: readonly string[];
}

/** The generated text of `request` (temperature 0, seed 0) with the chosen adapters; EvalError on any failure. */
export async function generateText(request: GenerationRequest, target: EvalTarget, options: EvaluateOptions): Promise<string> {
  const adapter = options.adapter.map((a) => (a.weight === 1 ? a.name : { name: a.name, weight: a.weight }));
  const common = {
    ...(target.model ? { model: target.model } : {}),
    max_tokens: request.maxTokens,
    temperature: 0,
    seed: 0,
    ...(request.stop && request.stop.length > 0 ? { stop: [...request.stop] } : {}),
    ...(adapter.length > 0 ? { adapter } : {}),
  };
  const chat = request.messages !== undefined;
  const path = chat ? "/v1/chat/completions" : "/v1/completions";
  const body = chat ? { ...common, messages: request.messages } : { ...common, prompt: request.prompt ?? "" };
  let response: Response;
  try {
    response = await fetch(`${target.baseUrl.replace(/\/+$/, "")}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(target.apiKey ? { authorization: `Bearer ${target.apiKey}` } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.requestTimeoutMs ?? 120_000),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
    const reason = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (error as Error).message;
    throw new EvalError(`cannot reach ${target.baseUrl}${path}: ${reason}`);
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EvalError(`${path} answered ${response.status} with non-JSON: ${text.slice(0, 120).replace(/\s+/g, " ")}`);
  }
  if (!response.ok) {
    const message = (json as { error?: { message?: string } }).error?.message ?? text.slice(0, 200);
    throw new EvalError(`${path} answered ${response.status} on ${request.id}: ${message.split("\n")[0]}`);
  }
  const choice = (json as { choices?: Array<{ text?: string; message?: { content?: string | null } }> }).choices?.[0];
  const output = chat ? choice?.message?.content : choice?.text;
  if (typeof output !== "string")
    throw new EvalError(`${path} answered without ${chat ? "choices[0].message.content" : "choices[0].text"} on ${request.id}`);
  return output;
}

/** Runs `work` over `items` with at most `concurrency` in flight; results keep the items' order. */
export async function mapConcurrently<T, R>(items: readonly T[], concurrency: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return results;
}

export interface InProcessServerOptions {
  /** GGUF path; when absent, the demo model (or the fallback lori-tiny written to modelsDir). */
  readonly model?: string;
  readonly modelsDir?: string;
  readonly adaptersDir?: string;
  readonly chatTemplate?: string;
  readonly gpu?: string;
  readonly threads?: string | number;
  readonly contextSize?: number;
}

/** A real server on a free loopback port, quiet; `close()` frees it. Settings not given come from LORI_* env vars. */
export async function startInProcessServer(
  options: InProcessServerOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EvalTarget & { close(): Promise<void>; modelId: string; modelPath: string; adaptersDir: string }> {
  const config = resolveServeConfig(
    {
      models: options.model ? [options.model] : undefined,
      modelsDir: options.modelsDir,
      adaptersDir: options.adaptersDir,
      chatTemplate: options.chatTemplate,
      gpu: options.gpu,
      threads: options.threads,
      contextSize: options.contextSize,
      host: "127.0.0.1",
      port: 0,
      logRequests: false,
    },
    env,
  );
  const server = await startServer(config);
  const { id: modelId, path: modelPath } = server.models.list()[0]!.spec;
  const apiKey = config.apiKeys[0];
  return {
    baseUrl: server.url,
    modelId,
    modelPath,
    adaptersDir: config.adaptersDir,
    model: modelId,
    ...(apiKey ? { apiKey } : {}),
    close: () => server.close(),
  };
}
