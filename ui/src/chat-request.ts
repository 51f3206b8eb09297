import { apiFetch, serverEvents } from "./api";

/** One adapter of a set, as the `adapter` field of a request takes it. */
export interface AdapterPick {
  name: string;
  weight: number;
}

export interface Sampling {
  temperature: number;
  top_p: number;
  top_k: number;
  max_tokens: number;
  /** null: the server picks one. */
  seed: number | null;
  /** Extension: keep generating past end-of-sequence (long answers to watch lanes and Stop at work). */
  ignore_eos: boolean;
}

export const DEFAULT_SAMPLING: Sampling = { temperature: 0.8, top_p: 0.95, top_k: 40, max_tokens: 128, seed: null, ignore_eos: false };

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The exact body sent: "copy as curl / openai-node" copy this object, so what you copy is what ran. */
export function chatRequestBody(model: string, messages: ChatMessage[], set: AdapterPick[], sampling: Sampling): Record<string, unknown> {
  return {
    model,
    messages,
    ...(set.length > 0 ? { adapter: set.map(({ name, weight }) => ({ name, weight })) } : {}),
    temperature: sampling.temperature,
    top_p: sampling.top_p,
    top_k: sampling.top_k,
    max_tokens: sampling.max_tokens,
    ...(sampling.seed !== null ? { seed: sampling.seed } : {}),
    ...(sampling.ignore_eos ? { ignore_eos: true } : {}),
    stream: true,
    stream_options: { include_usage: true },
  };
}

export interface AnswerStats {
  /** Request sent to first text, ms. */
  ttftMs: number | null;
  completionTokens: number | null;
  /** Generated tokens over the time from first to last text. */
  tokensPerSecond: number | null;
  finishReason: string | null;
}

/** Streams one chat completion, handing each text piece to `onText`; aborting `signal` stops it. */
export async function streamChat(
  body: Record<string, unknown>,
  signal: AbortSignal,
  onText: (piece: string) => void,
): Promise<AnswerStats> {
  const started = performance.now();
  let first: number | null = null;
  let last = started;
  let completionTokens: number | null = null;
  let finishReason: string | null = null;
  const response = await apiFetch("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  for await (const event of serverEvents(response)) {
    const choice = (event.choices as Array<{ delta?: { content?: string }; finish_reason?: string | null }> | undefined)?.[0];
    const piece = choice?.delta?.content;
    if (piece) {
      first ??= performance.now();
      last = performance.now();
      onText(piece);
    }
    if (choice?.finish_reason) finishReason = choice.finish_reason;
    const usage = event.usage as { completion_tokens?: number } | null | undefined;
    if (usage?.completion_tokens !== undefined) completionTokens = usage.completion_tokens;
  }
  const decodeSeconds = first === null ? 0 : (last - first) / 1000;
  return {
    ttftMs: first === null ? null : first - started,
    completionTokens,
    tokensPerSecond: completionTokens !== null && completionTokens > 1 && decodeSeconds > 0 ? (completionTokens - 1) / decodeSeconds : null,
    finishReason,
  };
}

export function describeSet(set: AdapterPick[]): string {
  return set.length === 0 ? "base model" : set.map((p) => `${p.name}×${p.weight}`).join(" + ");
}

/** A shell-safe curl command for the request (single quotes, with embedded ones escaped). */
export function curlSnippet(body: Record<string, unknown>, origin: string, withKey: boolean): string {
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  return [
    `curl -N ${quote(`${origin}/v1/chat/completions`)}`,
    `  -H 'Content-Type: application/json'`,
    ...(withKey ? [`  -H "Authorization: Bearer $LORI_API_KEY"`] : []),
    `  -d ${quote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

/** The same request with the official openai package; `adapter` is our extension, passed through as is. */
export function openaiNodeSnippet(body: Record<string, unknown>, origin: string): string {
  const json = JSON.stringify(body, null, 2).replaceAll("\n", "\n  ");
  return `import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${origin}/v1", apiKey: process.env.LORI_API_KEY ?? "unused" });
// "adapter" and "top_k" are lori-server extensions; the client sends unknown fields unchanged.
const stream = await client.chat.completions.create(
  ${json} as any,
);
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
`;
}
