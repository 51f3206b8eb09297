import path from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { GenerationJob } from "../../src/engine/generation-job.js";
import { ServedModel } from "../../src/engine/served-model.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { silentLogger } from "../../src/util/logger.js";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { getTestLlama } from "../support/test-llama.js";
import { useTempDir } from "../support/temp-dir.js";
import { greedyParams } from "../support/generation-params.js";

/**
 * Defect 4 ("Eval has failed: inconsistent sequence positions"): a request that is disposed while its
 * sequence is inside a decode must not hand that sequence (or its lane) to the next request before the decode
 * has settled. Each case aborts a job with one `next()` in flight and lets a queued request take over at once,
 * which on a generated tiny model reproduces the race deterministically (no timing involved).
 */
describe("a sequence is handed over only after its generation settled (defect 4, tiny model)", () => {
  const dir = useTempDir();
  let served: ServedModel;

  const params = greedyParams(24);

  beforeAll(async () => {
    const modelPath = path.join(dir.path, "tiny.gguf");
    await createTinyModel({ out: modelPath, seed: 7 });
    const adaptersDir = path.join(dir.path, "adapters");
    await writeRandomAdapter({ baseGguf: modelPath, adaptersDir, name: "a", seed: 11, bScale: 2 });
    const registry = new AdapterRegistry(adaptersDir, silentLogger);
    await registry.start(0);
    served = await ServedModel.load(
      await getTestLlama(),
      { id: "tiny", path: modelPath },
      {
        gpuLayers: 0,
        threads: 1,
        contextSize: 256,
        parallel: 1,
        maxLanes: 1,
        maxQueue: 8,
        maxAdapters: 4,
        agingMs: 10_000,
        chatTemplate: undefined,
        compiledAdaptersDir: path.join(dir.path, "compiled"),
      },
      registry,
    );
  });
  afterAll(async () => served?.dispose());

  const tokens = (text: string): Token[] => served.model.tokenize(text, true);

  function start(prompt: string, adapter: string | null): Promise<GenerationJob> {
    const adapters = served.adapters.resolve(adapter ? [{ name: adapter, weight: 1 }] : []);
    return GenerationJob.start(served, { promptTokens: tokens(prompt), params, adapters, signal: new AbortController().signal });
  }

  async function runToEnd(job: GenerationJob): Promise<string> {
    const generator = job.pieces();
    let text = "";
    try {
      for (let next = await generator.next(); !next.done; next = await generator.next()) text += next.value.text;
    } finally {
      job.dispose();
    }
    return text;
  }

  async function waitForQueued(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (served.lanes.stats.queued < count) {
      if (Date.now() > deadline) throw new Error("request never queued");
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Starts `first`, lets it decode a few tokens, queues `second`, then disposes `first` mid-decode. */
  async function abortMidDecodeThenRun(first: [string, string | null], second: [string, string | null]) {
    const jobA = await start(...first);
    const generatorA = jobA.pieces();
    for (let i = 0; i < 3; i++) await generatorA.next();
    const jobB = start(...second);
    await waitForQueued(1);
    const inFlight = generatorA.next().then(
      () => null,
      (error: unknown) => error as Error,
    );
    jobA.dispose();
    const textB = await runToEnd(await jobB);
    return { textB, errorA: await inFlight };
  }

  it("the next request on the same set does not erase the KV cells of a decode still in flight", async () => {
    const reference = await runToEnd(await start("the second prompt, alone", null));
    const { textB, errorA } = await abortMidDecodeThenRun(
      ["a first prompt that runs for a while", null],
      ["the second prompt, alone", null],
    );
    expect(errorA).toBeNull();
    expect(textB).toBe(reference);
    expect(served.lanes.stats.busySequences).toBe(0);
  });

  it("a lane is not rebound to another set while a decode of its sequence is in flight", async () => {
    const reference = await runToEnd(await start("the adapter's prompt", "a"));
    const { textB, errorA } = await abortMidDecodeThenRun(["a first prompt on the base model", null], ["the adapter's prompt", "a"]);
    expect(errorA).toBeNull();
    expect(textB).toBe(reference);
    expect(served.lanes.stats.busySequences).toBe(0);
  });
});
