/**
 * Bench client helpers shared by lori-server and llama-server runs: a streaming /v1/completions request that
 * measures time to first token and decode rate (and keeps llama-server's own `timings` when it sends them),
 * Prometheus histogram parsing, and per-thread CPU time of a process from /proc (Linux), to see where time goes.
 */
import { readdir, readFile } from "node:fs/promises";

export interface ServerTimings {
  readonly prompt_n?: number;
  readonly prompt_ms?: number;
  readonly predicted_n?: number;
  readonly predicted_ms?: number;
  readonly predicted_per_second?: number;
}

export interface TimedStream {
  readonly ttftMs: number;
  readonly tokens: number;
  /** Tokens after the first, per second of streaming after the first token. */
  readonly decodeTokensPerSecond: number;
  readonly totalMs: number;
  /** Text chunks received (≈ tokens; a partial UTF-8 character can hold one back). */
  readonly chunks: number;
  /** llama-server's per-request timings (prompt eval / decode), when the server sends them. */
  readonly timings?: ServerTimings;
}

/** One streaming completion; tokens from the usage chunk (falls back to text chunks). */
export async function streamTimed(url: string, body: Record<string, unknown>): Promise<TimedStream> {
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
  let chunks = 0;
  let timings: ServerTimings | undefined;
  let buffer = "";
  for await (const chunk of response.body) {
    const now = performance.now();
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let index: number;
    while ((index = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const event = buffer.slice(0, index).trim();
      buffer = buffer.slice(index).replace(/^\r?\n\r?\n/, "");
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6)) as {
        choices?: Array<{ text?: string }>;
        usage?: { completion_tokens: number } | null;
        timings?: ServerTimings;
      };
      if (data.usage) tokens = data.usage.completion_tokens;
      if (data.timings) timings = data.timings;
      if (data.choices?.[0]?.text) {
        chunks++;
        first ??= now;
        last = now;
      }
    }
  }
  const end = performance.now();
  const firstAt = first ?? end;
  if (tokens === 0) tokens = chunks;
  return {
    ttftMs: firstAt - start,
    tokens,
    decodeTokensPerSecond: tokens > 1 && last > firstAt ? ((tokens - 1) * 1000) / (last - firstAt) : 0,
    totalMs: end - start,
    chunks,
    ...(timings ? { timings } : {}),
  };
}

export interface Histogram {
  readonly count: number;
  readonly sum: number;
  /** Cumulative counts by upper bound (le), ascending; +Inf last. */
  readonly buckets: ReadonlyArray<{ le: number; count: number }>;
}

/** A Prometheus histogram from a /metrics text (labels ignored: all series summed). */
export function parseHistogram(text: string, name: string): Histogram {
  let count = 0;
  let sum = 0;
  const buckets = new Map<number, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const match = /^(\S+?)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const [, metric, labels = "", value] = match;
    const v = Number(value);
    if (metric === `${name}_count`) count += v;
    else if (metric === `${name}_sum`) sum += v;
    else if (metric === `${name}_bucket`) {
      const le = /le="([^"]+)"/.exec(labels)?.[1];
      if (le !== undefined) {
        const bound = le === "+Inf" ? Infinity : Number(le);
        buckets.set(bound, (buckets.get(bound) ?? 0) + v);
      }
    }
  }
  return { count, sum, buckets: [...buckets].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c })) };
}

/** Observations between two snapshots of the same histogram. */
export function histogramDelta(after: Histogram, before: Histogram): Histogram {
  return {
    count: after.count - before.count,
    sum: after.sum - before.sum,
    buckets: after.buckets.map((b) => ({ le: b.le, count: b.count - (before.buckets.find((x) => x.le === b.le)?.count ?? 0) })),
  };
}

/** Upper bound of the bucket holding the p-th percentile (a histogram only knows bucket bounds). */
export function histogramPercentileBound(h: Histogram, p: number): number | null {
  if (h.count === 0) return null;
  const rank = (p / 100) * h.count;
  for (const b of h.buckets) if (b.count >= rank) return b.le;
  return Infinity;
}

export interface ThreadCpu {
  readonly tid: number;
  readonly name: string;
  /** user + system CPU seconds. */
  readonly seconds: number;
}

/** CPU seconds per thread of a process (Linux /proc), labelled main thread / other threads; empty elsewhere. */
export async function threadCpu(pid: number): Promise<ThreadCpu[]> {
  const ticks = 100; // USER_HZ on Linux
  try {
    const tids = await readdir(`/proc/${pid}/task`);
    const out: ThreadCpu[] = [];
    for (const tid of tids) {
      try {
        const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const name = stat.slice(stat.indexOf("(") + 1, close);
        const fields = stat.slice(close + 2).split(" ");
        // fields[0] is field 3 (state); utime = field 14, stime = field 15.
        // Worker threads often share the process name ("node"): tell the main thread apart, group the rest.
        const label = Number(tid) === pid ? "main thread" : `other threads (${name})`;
        out.push({ tid: Number(tid), name: label, seconds: (Number(fields[11]) + Number(fields[12])) / ticks });
      } catch {
        // thread exited
      }
    }
    return out;
  } catch {
    return [];
  }
}

/** CPU seconds spent between two snapshots, grouped by thread name (busiest first). */
export function threadCpuDelta(after: readonly ThreadCpu[], before: readonly ThreadCpu[]): Record<string, number> {
  const byName = new Map<string, number>();
  for (const t of after) {
    const previous = before.find((b) => b.tid === t.tid)?.seconds ?? 0;
    const delta = t.seconds - previous;
    if (delta > 0) byName.set(t.name, (byName.get(t.name) ?? 0) + delta);
  }
  return Object.fromEntries([...byName].sort((a, b) => b[1] - a[1]).map(([n, s]) => [n, Math.round(s * 100) / 100]));
}
