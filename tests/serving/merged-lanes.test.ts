// Merged-weight lanes (--merged-lanes-mb) on the in-process server: a hot set is folded into a merged model
// that serves its new requests with the same greedy output as the LoRA path; requests keep the lane they
// started on while it retires; off by default; bad flag values refused at start.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/command.js";
import { serveCommand } from "../../src/cli/commands/serve.js";
import { resolveServeConfig } from "../../src/config/serve-config.js";
import type { AdapterChoice } from "../../src/engine/adapters/adapter-set-compiler.js";
import type { ServedModel } from "../../src/engine/served-model.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";

const PROMPT = "Q: What is 12 + 7?\nA:";
const MATH = ["math"];
const MATH_CHOICE: AdapterChoice[] = [{ name: "math", weight: 1 }];
const SET = [
  { name: "math", weight: 0.7 },
  { name: "code", weight: 0.5 },
];

async function complete(core: ServerCore, adapter: unknown): Promise<string> {
  const body = { prompt: PROMPT, max_tokens: 24, temperature: 0, ...(adapter === undefined ? {} : { adapter }) };
  const response = await postJson(core, "/v1/completions", body);
  expect(response.status, response.text).toBe(200);
  return response.json.choices[0].text as string;
}

async function scrape(core: ServerCore): Promise<string> {
  const response = await core.app.request("/metrics");
  expect(response.status).toBe(200);
  return response.text();
}

function servedOf(core: ServerCore): ServedModel {
  return core.models.get(undefined)!;
}

/** Admits and releases at once through the engine: counts towards the traffic window without generating. */
async function admitAndRelease(served: ServedModel, choices: AdapterChoice[]): Promise<boolean> {
  const admission = await served.admit(served.adapters.resolve(choices), [1 as Token], new AbortController().signal);
  const merged = admission.model !== served.model;
  admission.lease.release();
  admission.unpin();
  return merged;
}

describe("merged-weight lanes", () => {
  let core: ServerCore;

  beforeAll(async () => {
    // Window 4, hot at >= 50 % and 2 requests: the second request for a set makes it hot.
    core = await createInProcessServer({ mergedLanesMb: 64, mergedLanesWindow: 4, mergedLanesMinRequests: 2, parallel: 2 });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("a hot adapter and a hot weighted set each get a merged lane whose greedy output equals the LoRA path's", async () => {
    const served = servedOf(core);
    const merged = served.mergedLanes!;
    expect(merged).toBeDefined();
    const base = await complete(core, undefined);

    for (const adapter of [MATH, SET]) {
      const viaLora = await complete(core, adapter); // 1 of the window: not hot yet
      expect(await complete(core, adapter)).toBe(viaLora); // 2: hot, the build starts in the background
      await merged.settled();
      const label = adapter === MATH ? "math" : "code*0.5+math*0.7";
      const lane = () => merged.views.find((v) => v.label === label);
      expect(lane()?.state).toBe("ready");
      const before = lane()!.requests;
      expect(await complete(core, adapter)).toBe(viaLora);
      expect(lane()!.requests).toBe(before + 1); // it ran on the merged lane
      expect(viaLora).not.toBe(base); // the adapter changes the output: equality above has teeth
    }
    const text = await scrape(core);
    expect(text).toMatch(/^lori_merged_lanes\{adapter_set="code\*0\.5\+math\*0\.7",model="lori-demo",state="ready"\} 1$/m);
    expect(Number(/^lori_merged_lanes_budget_bytes\{model="lori-demo"\} (\d+)$/m.exec(text)?.[1])).toBe(64 * 1024 * 1024);
    // The merged models live in the compiled cache, under its budget.
    const cacheDir = core.compiledCache.root;
    const files = (await readdir(cacheDir, { recursive: true })).filter((f) => /merged-[0-9a-f]{64}\.gguf$/.test(String(f)));
    expect(files).toHaveLength(2);
  });

  it("a request keeps the merged lane it started on while the lane retires; the lane is freed after it", async () => {
    const served = servedOf(core);
    const merged = served.mergedLanes!;
    for (let i = 0; i < 2; i++) await admitAndRelease(served, MATH_CHOICE);
    await merged.settled();
    expect(merged.views.find((v) => v.label === "math")?.state).toBe("ready");
    // Held here, so they are running for as long as this test says.
    const admit = () => served.admit(served.adapters.resolve(MATH_CHOICE), [1 as Token], new AbortController().signal);
    const held = await admit();
    expect(held.model).not.toBe(served.model);
    // With the merged lane's two sequences (--parallel 2) taken, the next request takes the LoRA path, not a queue.
    const second = await admit();
    expect(second.model).not.toBe(served.model);
    const overflow = await admit();
    expect(overflow.model).toBe(served.model);
    for (const admission of [second, overflow]) {
      admission.lease.release();
      admission.unpin();
    }
    // Base traffic cools the set (share 0 < 25 %): the lane takes no new request but waits for the held one.
    for (let i = 0; i < 4; i++) expect(await admitAndRelease(served, [])).toBe(false);
    expect(merged.views.find((v) => v.label === "math")?.state).toBe("retiring");
    expect(merged.busySequences).toBe(1);
    expect(await admitAndRelease(served, MATH_CHOICE)).toBe(false); // new math requests take the LoRA path
    held.lease.release();
    held.unpin();
    await merged.settled();
    expect(merged.views.find((v) => v.label === "math")).toBeUndefined();
  });
});

describe("merged-weight lanes off", () => {
  const tmp = useTempDir();

  it("by default: no merged lane, no merged file, no merged-lane series", async () => {
    const core = await createInProcessServer({ parallel: 2 });
    try {
      expect(servedOf(core).mergedLanes).toBeUndefined();
      const outputs = new Set<string>();
      for (let i = 0; i < 4; i++) outputs.add(await complete(core, MATH));
      expect(outputs.size).toBe(1);
      const files = await readdir(core.compiledCache.root, { recursive: true });
      expect(files.filter((f) => String(f).includes("merged-"))).toEqual([]);
      expect(await scrape(core)).not.toMatch(/^lori_merged_lanes[{ ]/m);
    } finally {
      await core.dispose();
    }
  });

  it("for a set whose merged model does not fit the budget", async () => {
    // The demo model is ~3.2 MB: a 1 MiB budget never fits it.
    const core = await createInProcessServer({ mergedLanesMb: 1, mergedLanesWindow: 4, mergedLanesMinRequests: 2, parallel: 2 });
    try {
      const served = servedOf(core);
      for (let i = 0; i < 4; i++) expect(await admitAndRelease(served, MATH_CHOICE)).toBe(false);
      await served.mergedLanes!.settled();
      expect(served.mergedLanes!.views).toEqual([]);
      const files = await readdir(core.compiledCache.root, { recursive: true });
      expect(files.filter((f) => String(f).includes("merged-"))).toEqual([]);
    } finally {
      await core.dispose();
    }
  });

  it("for a quantized base, which keeps the LoRA path", async () => {
    const modelPath = join(tmp.path, "q8.gguf");
    await createTinyModel({ out: modelPath, dtype: "q8_0" });
    const core = await createInProcessServer({ models: [`q8=${modelPath}`], mergedLanesMb: 64 }, { withDemoAdapters: false });
    try {
      expect(servedOf(core).mergedLanes).toBeUndefined();
    } finally {
      await core.dispose();
    }
  });

  it("bad flag values are refused at start with one line", async () => {
    const refused: Array<[Record<string, unknown>, RegExp]> = [
      [{ mergedLanesMb: "-1" }, /invalid --merged-lanes-mb \/ LORI_MERGED_LANES_MB/],
      [{ mergedLanesMb: "lots" }, /invalid --merged-lanes-mb/],
      [{ mergedLanesMb: "1.5" }, /invalid --merged-lanes-mb/],
      [{ mergedLanesWindow: "1" }, /invalid --merged-lanes-window/],
      [{ mergedLanesShare: "0" }, /invalid --merged-lanes-share/],
      [{ mergedLanesShare: "1.5" }, /invalid --merged-lanes-share/],
      [{ mergedLanesMinRequests: "0" }, /invalid --merged-lanes-min-requests/],
      [
        { mergedLanesWindow: "8", mergedLanesMinRequests: "9" },
        /invalid --merged-lanes-min-requests .*more than --merged-lanes-window \(8\)/,
      ],
    ];
    for (const [flags, message] of refused) {
      expect(() => resolveServeConfig(flags, {}), JSON.stringify(flags)).toThrow(message);
    }
    expect(() => resolveServeConfig({}, { LORI_MERGED_LANES_MB: "-5" })).toThrow(/invalid --merged-lanes-mb/);
    expect(resolveServeConfig({}, {}).mergedLanesMb).toBe(0);
    // Through the CLI: refused before anything loads.
    const error = await serveCommand.run(["--merged-lanes-mb", "-1"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CliError);
    expect((error as Error).message).not.toContain("\n");
  });
});
