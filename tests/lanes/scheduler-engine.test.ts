import path from "node:path";
import type { Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/engine/adapters/adapter-registry.js";
import { GenerationJob } from "../../src/engine/generation-job.js";
import { ServedModel, type ServedModelOptions } from "../../src/engine/served-model.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { silentLogger } from "../../src/util/logger.js";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { greedyParams } from "../support/generation-params.js";

/**
 * The lane scheduler on real node-llama-cpp contexts (a generated tiny model): bursts, shutdown and
 * already-aborted signals, each of which went wrong in round 1 (issue 10, defects 8 and 12).
 */
describe("lane scheduler on a real engine (tiny model)", () => {
  const dir = useTempDir();
  let modelPath: string;
  let registry: AdapterRegistry;
  const served: ServedModel[] = [];

  const params = greedyParams(40);

  beforeAll(async () => {
    modelPath = path.join(dir.path, "tiny.gguf");
    await createTinyModel({ out: modelPath, seed: 3 });
    const adaptersDir = path.join(dir.path, "adapters");
    await writeRandomAdapter({ baseGguf: modelPath, adaptersDir, name: "a", seed: 21 });
    registry = new AdapterRegistry(adaptersDir, silentLogger);
    await registry.start(0);
  });
  afterAll(async () => {
    for (const model of served) await model.dispose();
  });

  async function load(options: Partial<ServedModelOptions>): Promise<ServedModel> {
    const model = await ServedModel.load(
      await getTestLlama(),
      { id: "tiny", path: modelPath },
      {
        gpuLayers: 0,
        threads: 1,
        contextSize: 128,
        parallel: 1,
        maxLanes: 1,
        maxQueue: 64,
        maxAdapters: 4,
        agingMs: 10_000,
        chatTemplate: undefined,
        compiledAdaptersDir: path.join(dir.path, "compiled"),
        ...options,
      },
      registry,
    );
    served.push(model);
    return model;
  }

  const tokens = (model: ServedModel, text: string): Token[] => model.model.tokenize(text, true);
  const bindingOf = async (model: ServedModel, name: string) =>
    (await model.adapters.bind(model.adapters.resolve([{ name, weight: 1 }]))).binding;

  /** `promise`'s outcome, or "hung" when it has not settled within `ms`. */
  function outcome(promise: Promise<unknown>, ms = 3000): Promise<string> {
    return Promise.race([
      promise.then(
        () => "resolved",
        (error: Error) => `rejected: ${error.name}`,
      ),
      new Promise<string>((resolve) => setTimeout(() => resolve("hung"), ms).unref()),
    ]);
  }

  it("serves a burst of 8 for one new set on 2 full lanes with --parallel 4 --max-lanes 4 (defect 8)", async () => {
    const model = await load({ parallel: 4, maxLanes: 4 });
    const binding = await bindingOf(model, "a");
    const signal = new AbortController().signal;
    const leases = await Promise.all(
      Array.from({ length: 8 }, (_, i) => model.lanes.acquire(binding, tokens(model, `request ${i}`), signal)),
    );
    const perLane = model.lanes.stats.bindings.filter((b) => b.label === "a").map((b) => b.busy);
    for (const lease of leases) lease.release();
    expect(perLane).toEqual([4, 4]);
  });

  it("rejects a request whose lane finishes opening after dispose, and every later one (defect 12)", async () => {
    const model = await load({ maxLanes: 2 });
    const binding = await bindingOf(model, "a");
    const opening = model.lanes.acquire(binding, tokens(model, "hello"), new AbortController().signal);
    const disposed = model.lanes.dispose();
    expect(await outcome(opening)).toBe("rejected: ShuttingDownError");
    await disposed;
    const later = model.lanes.acquire(binding, tokens(model, "hello"), new AbortController().signal);
    expect(await outcome(later)).toBe("rejected: ShuttingDownError");
  });

  it("stops a job whose request was aborted just before the job was made (defect 12)", async () => {
    const model = await load({});
    const controller = new AbortController();
    // Abort in the gap between getting the sequence and constructing the job.
    const acquire = model.lanes.acquire.bind(model.lanes);
    model.lanes.acquire = async (...args: Parameters<typeof acquire>) => {
      const lease = await acquire(...args);
      controller.abort();
      return lease;
    };
    const job = await GenerationJob.start(model, {
      promptTokens: tokens(model, "a prompt"),
      params,
      adapters: model.adapters.resolve([]),
      signal: controller.signal,
    });
    const generator = job.pieces();
    let next = await generator.next();
    while (!next.done) next = await generator.next();
    job.dispose();
    expect(next.value.completionTokens).toBeLessThanOrEqual(1);
  });
});
