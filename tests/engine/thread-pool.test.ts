// The persistent thread pool (native/threadpool, src/engine/thread-pool.ts) on real node-llama-cpp contexts of
// the committed demo model. Where the helper is built (npm ci builds it when g++ and Node's headers exist, as
// in CI) a pooled 2-thread context must decode exactly the tokens a 1-thread context does, survive disposal in
// either order and refuse what is not a context. Where it is not built, the mode must say so and attach nothing:
// that is the fallback every server without a compiler runs.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attachThreadPool, decodeThreads, threadPoolChoiceFromEnv, threadPoolMode } from "../../src/engine/thread-pool.js";
import { getTestLlama } from "../support/test-llama.js";

const modelPath = fileURLToPath(new URL("../../models/lori-demo.gguf", import.meta.url));
const helperPath = fileURLToPath(new URL("../../native/build/lori-threadpool.node", import.meta.url));
const helperBuilt = existsSync(helperPath);

async function greedyTokens(context: LlamaContext, prompt: readonly Token[], count: number): Promise<Token[]> {
  const sequence = context.getSequence();
  const out: Token[] = [];
  for await (const token of sequence.evaluate([...prompt], { temperature: 0, yieldEogToken: true })) {
    out.push(token);
    if (out.length >= count) break;
  }
  sequence.dispose();
  return out;
}

describe("thread-pool mode", () => {
  it("is openmp on an OpenMP engine, per-compute when switched off, else follows the helper", () => {
    expect(threadPoolMode({ openmp: true, gpu: "cpu" }, "auto")).toEqual({ mode: "openmp" });
    expect(threadPoolMode({ openmp: false, gpu: "cpu" }, "off")).toEqual({ mode: "per-compute", reason: "LORI_THREAD_POOL=off" });
    const auto = threadPoolMode({ openmp: false, gpu: "cpu" }, "auto");
    if (helperBuilt) expect(auto).toEqual({ mode: "persistent" });
    else expect(auto).toEqual({ mode: "per-compute", reason: "no thread-pool helper (npm run build:native)" });
  });

  it("reads LORI_THREAD_POOL: off switches it off, anything else is auto", () => {
    expect(threadPoolChoiceFromEnv({ LORI_THREAD_POOL: "off" })).toBe("off");
    expect(threadPoolChoiceFromEnv({})).toBe("auto");
  });
});

describe("decode threads", () => {
  it("on 2 cores: a 1-token batch gets 1 thread, a bigger one 2, and concurrent decodes share", () => {
    expect(decodeThreads(2, 1, 0, 2)).toBe(1);
    expect(decodeThreads(2, 4, 0, 2)).toBe(2);
    expect(decodeThreads(2, 512, 0, 2)).toBe(2);
    expect(decodeThreads(2, 4, 1, 2)).toBe(1);
    expect(decodeThreads(2, 4, 3, 2)).toBe(1);
  });

  it("on 16 cores at 9 threads: a 1-token batch keeps its threads (a core is left for Node anyway)", () => {
    expect(decodeThreads(9, 1, 0, 16)).toBe(9);
    expect(decodeThreads(9, 8, 0, 16)).toBe(9);
    expect(decodeThreads(9, 8, 1, 16)).toBe(4);
    expect(decodeThreads(9, 8, 8, 16)).toBe(1);
  });

  it("on 1 core: always 1", () => {
    expect(decodeThreads(1, 1, 0, 1)).toBe(1);
    expect(decodeThreads(1, 64, 0, 1)).toBe(1);
  });
});

describe("a persistent pool on a real context", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await (await getTestLlama()).loadModel({ modelPath });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it("attaches nothing for one thread or a mode other than persistent", async () => {
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    try {
      expect(attachThreadPool(context, "persistent", 1, 50)).toBeUndefined();
      expect(attachThreadPool(context, "per-compute", 2, 50)).toBeUndefined();
      expect(attachThreadPool(context, "openmp", 2, 50)).toBeUndefined();
    } finally {
      await context.dispose();
    }
  });

  it.skipIf(!helperBuilt)("decodes at 2 pooled threads exactly the greedy tokens of 1 thread, at poll 0 and 50", async () => {
    const prompt = model.tokenize("Once upon a time, Mia");
    const single = await model.createContext({ contextSize: 256, threads: 1 });
    const reference = await greedyTokens(single, prompt, 48);
    await single.dispose();
    expect(reference).toHaveLength(48);
    for (const poll of [0, 50]) {
      // four sequences: the cells the helper checks are contextSize x sequences
      const context = await model.createContext({ contextSize: 256, sequences: 4, threads: 2 });
      const pool = attachThreadPool(context, "persistent", 2, poll);
      expect(pool, "a pool is attached").toBeDefined();
      try {
        expect(await greedyTokens(context, prompt, 48)).toEqual(reference);
      } finally {
        await context.dispose();
        pool!.free();
        pool!.free(); // idempotent
      }
    }
  });

  it.skipIf(!helperBuilt)("can be detached, attached again and freed while its context lives, and the context decodes on", async () => {
    const prompt = model.tokenize("Once");
    const context = await model.createContext({ contextSize: 256, threads: 2 });
    try {
      const pool = attachThreadPool(context, "persistent", 2, 50)!;
      const before = await greedyTokens(context, prompt, 8);
      pool.use(false); // detached: ggml's own per-compute threads
      expect(await greedyTokens(context, prompt, 8)).toEqual(before);
      pool.use(true);
      expect(await greedyTokens(context, prompt, 8)).toEqual(before);
      pool.free();
      expect(await greedyTokens(context, prompt, 8)).toEqual(before);
    } finally {
      await context.dispose();
    }
  });

  it.skipIf(!helperBuilt)("refuses what is not a node-llama-cpp context, and bad thread or poll values", async () => {
    const context = await model.createContext({ contextSize: 256, threads: 2 });
    try {
      expect(() => attachThreadPool(context, "persistent", 2, 101)).toThrow(/poll 0\.\.100/);
      // a context of the same size seen as another size: the layout check refuses it
      const lying = Object.create(context, { contextSize: { value: 512 } }) as LlamaContext;
      expect(() => attachThreadPool(lying, "persistent", 2, 50)).toThrow(/not a loaded node-llama-cpp 3\.21\.1 context/);
    } finally {
      await context.dispose();
    }
  });
});
