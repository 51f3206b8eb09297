/**
 * Every call the page makes to the server: the API key from localStorage goes on each one, and a failure
 * becomes an ApiFailure carrying the server's own error message (the OpenAI envelope's `error.message`).
 */

const KEY_STORAGE = "lori.apiKey";

export function storedApiKey(): string {
  return localStorage.getItem(KEY_STORAGE) ?? "";
}

export function storeApiKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiFailure";
  }
}

/** What to show for any failure: the server's message with its status, or the browser's reason. */
export function errorText(error: unknown): string {
  if (error instanceof ApiFailure) return error.status ? `${error.status}: ${error.message}` : error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

function withKey(headers: HeadersInit | undefined): Headers {
  const result = new Headers(headers);
  const key = storedApiKey();
  if (key) result.set("Authorization", `Bearer ${key}`);
  return result;
}

async function failureOf(response: Response): Promise<ApiFailure> {
  const text = await response.text().catch(() => "");
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof message === "string" && message) return new ApiFailure(response.status, message);
  } catch {
    // not JSON: fall through to the raw text
  }
  return new ApiFailure(response.status, text.trim() || response.statusText || "request failed");
}

export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, { ...init, headers: withKey(init.headers) });
  if (!response.ok) throw await failureOf(response);
  return response;
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const response = await apiFetch(path, signal ? { signal } : {});
  return (await response.json()) as T;
}

export async function sendJson<T>(method: "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await apiFetch(path, init);
  return (await response.json()) as T;
}

/** The JSON events of a text/event-stream body, up to `data: [DONE]`; an in-band error envelope throws. */
export async function* serverEvents(response: Response): AsyncGenerator<Record<string, unknown>> {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const event = JSON.parse(data) as Record<string, unknown>;
        const error = event.error as { message?: string } | undefined;
        if (error) throw new ApiFailure(0, error.message ?? "generation failed");
        yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// Shapes of the responses the page reads.

export interface ModelObject {
  id: string;
  parent: string | null;
  lori?: LoriSummary;
  meta?: { context_length: number; max_lanes: number };
}

export interface LoriSummary {
  variant: string;
  rank: number;
  alpha: number;
  sparsity: number;
  seed: number | null;
  lineage: unknown[];
}

export interface AdapterObject {
  id: string;
  created: number;
  parent: string | null;
  hash: string;
  bytes: number;
  target_modules: string[];
  lori: LoriSummary;
}

export interface Session {
  role: "admin" | "user";
  /** May upload training files and start fine-tuning jobs. */
  train: boolean;
  adapters: string[] | null;
}
