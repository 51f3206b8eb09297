/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by where the code comes from
 * (our src, node-llama-cpp, hono, Node internals), plus idle / GC / native ("program") time. Only the main JS
 * thread is profiled: llama.cpp's decode runs on addon worker threads and shows up as idle here.
 */
import { readFile } from "node:fs/promises";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  readonly total_ms: number;
  readonly idle_ms: number;
  readonly gc_ms: number;
  readonly program_ms: number;
  /** JS self time (ms) by origin. */
  readonly js_self_ms_by_origin: Record<string, number>;
  /** Top functions by self time. */
  readonly top_self_ms: Array<{ fn: string; at: string; ms: number }>;
}

function origin(url: string): string {
  if (url === "") return "native/builtin";
  if (url.startsWith("node:")) return "node internals";
  if (url.includes("/node_modules/node-llama-cpp/")) return "node-llama-cpp";
  if (url.includes("/node_modules/@hono/")) return "@hono/node-server";
  if (url.includes("/node_modules/hono/")) return "hono";
  if (url.includes("/node_modules/zod/")) return "zod";
  const nm = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm) return nm[1]!;
  const ours = /\/dist\/([^/]+)\//.exec(url);
  if (ours) return `lori dist/${ours[1]}`;
  const source = /\/src\/([^/]+)\//.exec(url);
  if (source) return `lori src/${source[1]}`;
  return "other";
}

/** A profile frame's file, relative to node_modules or to our dist/ or src/. */
function shortUrl(url: string): string {
  if (url.includes("/node_modules/")) return url.replace(/^.*\/node_modules\//, "");
  return url.replace(/^.*\/dist\//, "dist/").replace(/^.*\/src\//, "src/");
}

/** CLOCK_MONOTONIC in microseconds: the clock V8 stamps profile samples with on Linux. */
export const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

/**
 * `window` (microseconds, from monotonicMicros() in any process on the same machine) keeps only the samples
 * taken within it, e.g. the traffic and not the server's start-up; ignored when it misses the profile.
 */
export async function summariseCpuProfile(file: string, top = 15, window?: { from: number; to: number }): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const useWindow = window !== undefined && window.from < profile.endTime && window.to > profile.startTime;
  let at = profile.startTime;
  let windowStart = profile.startTime;
  let windowEnd = profile.endTime;
  if (useWindow) {
    windowStart = Math.max(window.from, profile.startTime);
    windowEnd = Math.min(window.to, profile.endTime);
  }
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (useWindow && (at < windowStart || at > windowEnd)) return;
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  let idle = 0;
  let gc = 0;
  let program = 0;
  const byOrigin = new Map<string, number>();
  const byFunction = new Map<string, { fn: string; at: string; us: number }>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === "(idle)") idle += us;
    else if (functionName === "(garbage collector)") gc += us;
    else if (functionName === "(program)") program += us;
    else {
      const o = origin(url);
      byOrigin.set(o, (byOrigin.get(o) ?? 0) + us);
      const at = `${shortUrl(url)}:${lineNumber + 1}`;
      const key = `${functionName}@${at}`;
      const entry = byFunction.get(key) ?? { fn: functionName || "(anonymous)", at, us: 0 };
      entry.us += us;
      byFunction.set(key, entry);
    }
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    total_ms: ms(windowEnd - windowStart),
    idle_ms: ms(idle),
    gc_ms: ms(gc),
    program_ms: ms(program),
    js_self_ms_by_origin: Object.fromEntries([...byOrigin].sort((a, b) => b[1] - a[1]).map(([o, us]) => [o, ms(us)])),
    top_self_ms: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ fn: e.fn, at: e.at, ms: ms(e.us) })),
  };
}
