import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { renderKustomization } from "./kustomize-render.js";
import { parseEppConfig, repoRoot } from "./manifest-validation.js";

// What each replica promises the endpoint picker (the Inference Extension's model server protocol), checked on
// a real server on the demo model under a load of mixed adapter sets, with /metrics read by a Prometheus
// text-format parser. The server's own counts come from GET /ready and from the lane scheduler's stats; a
// sample is used only when those were the same before and after the scrape (the state did not move under it).

const MAX_LANES = 2;
/** The adapter sets of the load, as the server labels them (names sorted, joined by "+"), and how to ask for each. */
const LOAD: Array<{ label: string; body: Record<string, unknown> }> = [
  { label: "math", body: { model: "math" } },
  { label: "code", body: { model: "code" } },
  { label: "nlu", body: { model: "nlu" } },
  { label: "safety", body: { model: "safety" } },
  { label: "math+safety", body: { model: "lori-demo", adapter: ["safety", "math"] } },
  { label: "", body: { model: "lori-demo" } },
];

interface Snapshot {
  queued: number;
  busy: number;
  running: string[];
  waiting: string[];
  resident: string[];
}

interface Sample {
  families: Map<string, ParsedFamily>;
  ready: { queued: number; busy: number };
  own: Snapshot;
  inFlight: string[];
  scrapedAt: number;
}

const sorted = (list: Iterable<string>) => [...new Set(list)].filter(Boolean).sort();
const csv = (value: string | undefined) => sorted((value ?? "").split(","));

let harness: TestServer;
let adaptersDir: string;

beforeAll(async () => {
  adaptersDir = mkdtempSync(path.join(tmpdir(), "lori-conformance-"));
  for (const name of ["math", "code", "nlu", "safety"])
    cpSync(path.join(demoAdaptersDir, name), path.join(adaptersDir, name), { recursive: true });
  harness = await startTestServer({
    models: [`lori-demo=${demoModelPath}`],
    adaptersDir,
    maxLanes: MAX_LANES,
    parallel: 2,
    contextSize: 256,
    maxQueue: 100,
    adaptersPollMs: 0,
  });
}, 120_000);

afterAll(async () => {
  await harness?.server.close();
  rmSync(adaptersDir, { recursive: true, force: true });
});

function ownSnapshot(): Snapshot {
  const stats = harness.server.models.list().map((m) => m.lanes.stats);
  return {
    queued: stats.reduce((n, s) => n + s.queued, 0),
    busy: stats.reduce((n, s) => n + s.busySequences, 0),
    running: sorted(stats.flatMap((s) => s.bindings.filter((b) => b.busy > 0).map((b) => b.label))),
    waiting: sorted(stats.flatMap((s) => s.waitingLabels)),
    resident: sorted(stats.flatMap((s) => s.bindings.map((b) => b.label))),
  };
}

async function scrape(): Promise<Map<string, ParsedFamily>> {
  const response = await fetch(`${harness.baseUrl}/metrics`);
  expect(response.status).toBe(200);
  return new Map(parsePrometheusTextFormat(await response.text()).map((f) => [f.name, f]));
}

function gauge(families: Map<string, ParsedFamily>, name: string): number {
  const family = families.get(name);
  if (!family) throw new Error(`no ${name} in /metrics`);
  expect(family.type).toBe("GAUGE");
  expect(family.metrics).toHaveLength(1);
  return Number(family.metrics[0]!.value);
}

function loraInfo(families: Map<string, ParsedFamily>, name: string) {
  const family = families.get(name);
  if (!family) throw new Error(`no ${name} in /metrics`);
  expect(family.type).toBe("GAUGE");
  expect(family.metrics).toHaveLength(1);
  return { labels: family.metrics[0]!.labels ?? {}, value: Number(family.metrics[0]!.value) };
}

/** Runs the load and samples while it runs; returns the consistent samples and the idle KV use before it. */
async function sampleUnderLoad(): Promise<{ samples: Sample[]; idleKv: number; tried: number }> {
  const idleKv = gauge(await scrape(), "lori_kv_cache_usage_ratio");
  const inFlight: string[] = [];
  let done = false;
  const requests = Array.from({ length: 3 }, (_, round) =>
    LOAD.map(async ({ label, body }, i) => {
      inFlight.push(label);
      const response = await fetch(`${harness.baseUrl}/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...body, prompt: `Request ${round}-${i}: count to ten.`, max_tokens: 96, ignore_eos: true, temperature: 0 }),
      });
      expect(response.status).toBe(200);
      await response.text();
      inFlight.splice(inFlight.indexOf(label), 1);
    }),
  ).flat();
  const all = Promise.all(requests).finally(() => {
    done = true;
  });
  const samples: Sample[] = [];
  let tried = 0;
  while (!done) {
    tried++;
    const before = JSON.stringify([ownSnapshot(), sorted(inFlight)]);
    const scrapedAt = Date.now() / 1000;
    const families = await scrape();
    const readyBody = (await (await fetch(`${harness.baseUrl}/ready`)).json()) as {
      models: Array<{ queued_requests: number; busy_sequences: number }>;
    };
    const own = ownSnapshot();
    if (JSON.stringify([own, sorted(inFlight)]) === before) {
      const ready = {
        queued: readyBody.models.reduce((n, m) => n + m.queued_requests, 0),
        busy: readyBody.models.reduce((n, m) => n + m.busy_sequences, 0),
      };
      samples.push({ families, ready, own, inFlight: [...inFlight], scrapedAt });
    }
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
  await all;
  return { samples, idleKv, tried };
}

describe("/metrics under a load of mixed adapter sets (the picker's model server protocol)", () => {
  let run: Awaited<ReturnType<typeof sampleUnderLoad>>;
  beforeAll(async () => {
    run = await sampleUnderLoad();
    console.log(`[conformance] ${run.samples.length} consistent samples of ${run.tried} scrapes`);
  }, 300_000);

  it("took enough samples with requests both running and waiting", () => {
    expect(run.samples.length).toBeGreaterThanOrEqual(10);
    expect(run.samples.some((s) => s.own.queued > 0 && s.own.busy > 0)).toBe(true);
    expect(run.samples.some((s) => s.own.running.length === MAX_LANES)).toBe(true);
  });

  it("queued and running equal the server's own counts (GET /ready and the scheduler), under our names and vLLM's", () => {
    // Independently of the server: every queued or running request is one the client has in flight, and at
    // some moments they are all of them.
    for (const { own, inFlight } of run.samples) expect(own.queued + own.busy).toBeLessThanOrEqual(inFlight.length);
    expect(run.samples.some((s) => s.inFlight.length > MAX_LANES * 2 && s.own.queued + s.own.busy === s.inFlight.length)).toBe(true);
    for (const { families, ready, own } of run.samples) {
      expect(gauge(families, "lori_queue_depth")).toBe(own.queued);
      expect(gauge(families, "lori_sequences_busy")).toBe(own.busy);
      expect(ready).toEqual({ queued: own.queued, busy: own.busy });
      expect(gauge(families, "vllm:num_requests_waiting")).toBe(own.queued);
      expect(gauge(families, "vllm:num_requests_running")).toBe(own.busy);
    }
  });

  it("KV-cache use stays within 0..1, moves with load, and its vLLM aliases agree", () => {
    const values = run.samples.map((s) => gauge(s.families, "lori_kv_cache_usage_ratio"));
    for (const v of values) expect(v).toBeGreaterThanOrEqual(0);
    for (const v of values) expect(v).toBeLessThanOrEqual(1);
    expect(run.idleKv).toBe(0);
    expect(Math.max(...values)).toBeGreaterThan(run.idleKv);
    expect(new Set(values).size).toBeGreaterThan(1);
    for (const s of run.samples) {
      expect(gauge(s.families, "vllm:kv_cache_usage_perc")).toBe(gauge(s.families, "lori_kv_cache_usage_ratio"));
      expect(gauge(s.families, "vllm:gpu_cache_usage_perc")).toBe(gauge(s.families, "lori_kv_cache_usage_ratio"));
    }
  });

  it("the LoRA gauge lists exactly the adapter sets running and waiting, max_lora = --max-lanes, value = now", () => {
    let sawWaiting = false;
    for (const { families, own, inFlight, scrapedAt } of run.samples) {
      const ours = loraInfo(families, "lori_lora_requests_info");
      expect(csv(ours.labels.running_lora_adapters)).toEqual(own.running);
      expect(csv(ours.labels.waiting_lora_adapters)).toEqual(own.waiting);
      expect(csv(ours.labels.resident_lora_adapters)).toEqual(own.resident);
      expect(ours.labels.max_lora).toBe(String(MAX_LANES));
      expect(Math.abs(ours.value - scrapedAt)).toBeLessThan(5);
      // Only sets the client has in flight, never the base model (""), and each set once.
      for (const label of [...own.running, ...own.waiting]) expect(inFlight).toContain(label);
      expect(own.running.length).toBeLessThanOrEqual(MAX_LANES);
      for (const label of own.running) expect(own.resident).toContain(label);
      if (own.waiting.length > 0) sawWaiting = true;
      // vLLM's name carries the same three labels and no others.
      const vllm = loraInfo(families, "vllm:lora_requests_info");
      expect(Object.keys(vllm.labels).sort()).toEqual(["max_lora", "running_lora_adapters", "waiting_lora_adapters"]);
      expect(vllm.labels).toEqual({
        max_lora: ours.labels.max_lora,
        running_lora_adapters: ours.labels.running_lora_adapters,
        waiting_lora_adapters: ours.labels.waiting_lora_adapters,
      });
    }
    expect(sawWaiting).toBe(true);
    const everRunning = new Set(run.samples.flatMap((s) => s.own.running));
    expect(everRunning.size).toBeGreaterThanOrEqual(3);
  });

  it("every metric the deployed picker config names is a single-sample gauge in the scrape", () => {
    const configMap = renderKustomization(path.join(repoRoot, "deploy/kubernetes/overlays/cpu")).find(
      (o) => o.kind === "ConfigMap" && o.metadata.name === "lori-server-epp",
    )!;
    const { engine } = parseEppConfig(configMap);
    const specs = [engine.queuedRequestsSpec, engine.runningRequestsSpec, engine.kvUsageSpec, engine.loraSpec].filter(Boolean);
    expect(specs).toHaveLength(4);
    const families = run.samples.at(-1)!.families;
    for (const spec of specs) expect(families.get(spec)?.type).toBe("GAUGE");
  });

  it("after the load: nothing queued, running or waiting", async () => {
    const families = await scrape();
    expect(gauge(families, "lori_queue_depth")).toBe(0);
    expect(gauge(families, "lori_sequences_busy")).toBe(0);
    const info = loraInfo(families, "lori_lora_requests_info");
    expect(info.labels.running_lora_adapters).toBe("");
    expect(info.labels.waiting_lora_adapters).toBe("");
  });
});
