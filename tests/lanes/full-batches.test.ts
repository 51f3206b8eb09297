import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../../src/engine/generate.js";
import { BASE_BINDING } from "../../src/engine/lanes/lane-binding.js";
import { LaneScheduler } from "../../src/engine/lanes/lane-scheduler.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";
import { greedyParams } from "../support/generation-params.js";

const TOKENS = 48;

/**
 * Issue 11, "3 of 4 sequences per decode": with four requests generating on one 4-sequence lane, each batch
 * should carry a token of every one of them. Prints the batch fill with node-llama-cpp's own schedule
 * (batchWaitMs 0) for comparison; asserts it only for ours.
 */
describe("full decode batches (tiny model)", () => {
  const dir = useTempDir();
  let model: LlamaModel;

  const params = greedyParams(TOKENS);

  beforeAll(async () => {
    const modelPath = path.join(dir.path, "tiny.gguf");
    await createTinyModel({ out: modelPath, seed: 5, layers: 4, embd: 256, heads: 4, kvHeads: 2, ff: 512 });
    model = await (await getTestLlama()).loadModel({ modelPath, gpuLayers: 0 });
  });
  afterAll(async () => model?.dispose());

  /**
   * Sequences per decode and tokens per decode while 4 same-set requests generate on one lane. With
   * `slowReader`, request i waits i event-loop turns before asking for its next piece, as an HTTP response
   * writer might.
   */
  async function fill(
    batchWaitMs: number,
    slowReader = false,
  ): Promise<{ sequencesPerDecode: number; tokensPerDecode: number; decodes: number }> {
    const scheduler = LaneScheduler.forModel(model, {
      sequences: 4,
      contextSize: 512,
      threads: 1,
      maxLanes: 1,
      maxQueue: 8,
      agingMs: 10_000,
      maxAdapters: 4,
      batchWaitMs,
    });
    try {
      await scheduler.start(BASE_BINDING);
      const before = scheduler.stats.decodes!;
      const signal = new AbortController().signal;
      const prompts = ["one", "two", "three", "four"].map((p) => model.tokenize(`request ${p}`, true));
      const leases = await Promise.all(prompts.map((tokens) => scheduler.acquire(BASE_BINDING, tokens, signal)));
      const counts = await Promise.all(
        leases.map(async (lease, i) => {
          const generator = generate({ model, sequence: lease.sequence, promptTokens: prompts[i]!, params, stopTokens: new Set(), signal });
          let next = await generator.next();
          while (!next.done) {
            if (slowReader) for (let k = 0; k < i; k++) await new Promise((r) => setImmediate(r));
            next = await generator.next();
          }
          lease.release();
          return next.value.completionTokens;
        }),
      );
      expect(counts).toEqual([TOKENS, TOKENS, TOKENS, TOKENS]);
      const after = scheduler.stats.decodes!;
      const decodes = after.decodes - before.decodes;
      return {
        sequencesPerDecode: (after.sequences - before.sequences) / decodes,
        tokensPerDecode: (after.tokens - before.tokens) / decodes,
        decodes,
      };
    } finally {
      await scheduler.dispose();
    }
  }

  it("decodes a token of every generating sequence in each batch", async () => {
    const report = (name: string, before: Awaited<ReturnType<typeof fill>>, after: Awaited<ReturnType<typeof fill>>) =>
      console.info(
        `full-batches (${name}): sequences per decode ${before.sequencesPerDecode.toFixed(2)} -> ${after.sequencesPerDecode.toFixed(2)}, ` +
          `tokens per decode ${before.tokensPerDecode.toFixed(2)} -> ${after.tokensPerDecode.toFixed(2)}, decodes ${before.decodes} -> ${after.decodes}`,
      );
    const eager = await fill(1);
    const slow = await fill(1, true);
    report("eager readers, batchWaitMs 0 -> 1", await fill(0), eager);
    report("slow readers, batchWaitMs 0 -> 1", await fill(0, true), slow);
    // 4 requests of TOKENS tokens: one batch of the 4 prompts, then TOKENS - 1 batches of 4 generated tokens.
    expect(eager.decodes).toBe(TOKENS);
    expect(eager.sequencesPerDecode).toBe(4);
    // A slow reader may exceed the 1 ms wait on a loaded machine (3.05 was seen with other jobs on both
    // cores); node-llama-cpp's own schedule gives about 2.0 here, so 2.5 still separates the two.
    expect(slow.sequencesPerDecode).toBeGreaterThanOrEqual(2.5);
  });
});
