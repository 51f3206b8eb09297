import path from "node:path";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { compileGgufLora } from "../../src/lora/gguf-lora.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { createInProcessServer, demoAdaptersDir, demoModelPath, postJson } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";
import { getTestLlama } from "../support/test-llama.js";

// Adapter sets under concurrency, hot swap and HTTP merge, on the committed demo model in process: every clone
// runs these. tests/lanes/{no-cross-talk,churn,hot-swap,merged-equals-stacked}.test.ts run the same behaviours
// at a larger scale on stories260K where ../shared/fixtures exists.

type AdapterField = undefined | string | Array<string | { name: string; weight: number }>;

interface Outcome {
  status: number;
  text: string;
  tokens: string[];
  /** top-1 minus top-2 logprob at each position (the logit gap under greedy decoding). */
  gaps: number[];
}

/** Greedy completion with each position's top-2 gap, to tell a near tie from a real difference. */
async function greedy(core: ServerCore, adapter: AdapterField, prompt: string, maxTokens = 16): Promise<Outcome> {
  const r = await postJson(core, "/v1/completions", {
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    logprobs: 2,
    ...(adapter === undefined ? {} : { adapter }),
  });
  if (r.status !== 200) return { status: r.status, text: r.text, tokens: [], gaps: [] };
  const choice = r.json.choices[0] as { text: string; logprobs: { tokens: string[]; top_logprobs: Array<Record<string, number>> } };
  const gaps = choice.logprobs.top_logprobs.map((top) => {
    const values = Object.values(top).sort((x, y) => y - x);
    return values.length > 1 ? values[0]! - values[1]! : Infinity;
  });
  return { status: 200, text: choice.text, tokens: choice.logprobs.tokens, gaps };
}

/** Why `got` differs from `want`, or null when it does not or only at a near tie (batched decoding may round differently). */
function realDifference(want: Outcome, got: Outcome): string | null {
  if (got.status !== 200) return `status ${got.status} ${got.text}`;
  if (got.text === want.text) return null;
  const position = want.tokens.findIndex((token, i) => got.tokens[i] !== token);
  const gap = want.gaps[position] ?? Infinity;
  return gap < 1e-3 ? null : `alone ${JSON.stringify(want.text)} vs concurrent ${JSON.stringify(got.text)} (gap ${gap})`;
}

/** A long stream, cancelled by the client after its second event (the server is mid-decode then). */
async function abortedStream(core: ServerCore, adapter: AdapterField, prompt: string): Promise<number> {
  const response = await core.app.request("/v1/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: 200, temperature: 0, ignore_eos: true, stream: true, ...(adapter ? { adapter } : {}) }),
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let events = 0;
  while (events < 2) {
    const chunk = await reader.read();
    if (chunk.done) break;
    events += decoder.decode(chunk.value).split("data: ").length - 1;
  }
  await reader.cancel();
  return response.status;
}

async function metricsText(core: ServerCore): Promise<string> {
  return (await core.app.request("/metrics")).text();
}

describe("no cross-talk between adapter sets under concurrency, with streams aborted mid-decode (demo model)", () => {
  let core: ServerCore;
  const SETS: Array<{ label: string; adapter: AdapterField }> = [
    { label: "base", adapter: undefined },
    { label: "math", adapter: "math" },
    { label: "code", adapter: ["code"] },
    { label: "nlu", adapter: [{ name: "nlu", weight: 1 }] },
    { label: "math+safety", adapter: ["math", "safety"] },
    {
      label: "math*0.7 + code*-1.3",
      adapter: [
        { name: "math", weight: 0.7 },
        { name: "code", weight: -1.3 },
      ],
    },
  ];
  const PROMPTS = ["Once upon a time", "Q: 7 + 5?\nA:", "The little dog", "function add(a, b) {"];

  beforeAll(async () => {
    // Six sets on at most 2 lanes of 2 sequences: requests batch within a set and lanes swap between sets.
    core = await createInProcessServer({ parallel: 2, maxLanes: 2, maxQueue: 1000 });
  });
  afterAll(async () => core?.dispose());

  it("gives every request that is not aborted the output it gets alone, while a quarter of the streams abort", async () => {
    const alone = new Map<string, Outcome>();
    for (const set of SETS) for (const prompt of PROMPTS) alone.set(`${set.label}|${prompt}`, await greedy(core, set.adapter, prompt));
    // Sanity: every two sets answer some prompt differently (otherwise the test could not see cross-talk between them).
    for (const [i, one] of SETS.entries()) {
      for (const other of SETS.slice(i + 1)) {
        const differ = PROMPTS.some((prompt) => alone.get(`${one.label}|${prompt}`)!.text !== alone.get(`${other.label}|${prompt}`)!.text);
        expect(differ, `${one.label} vs ${other.label}`).toBe(true);
      }
    }

    const jobs = Array.from({ length: 3 }, () => SETS.flatMap((set) => PROMPTS.map((prompt) => ({ set, prompt })))).flat();
    // Deterministic shuffle so adjacent requests use different sets.
    let state = 7;
    for (let i = jobs.length - 1; i > 0; i--) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      const j = state % (i + 1);
      [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
    }
    const failures: string[] = [];
    let aborted = 0;
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const index = next++;
        const { set, prompt } = jobs[index]!;
        const key = `${set.label}|${prompt}`;
        if (index % 4 === 0) {
          const status = await abortedStream(core, set.adapter, prompt);
          if (status !== 200) failures.push(`${key}: aborted stream got ${status}`);
          aborted++;
          continue;
        }
        const difference = realDifference(alone.get(key)!, await greedy(core, set.adapter, prompt));
        if (difference) failures.push(`${key}: ${difference}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(failures).toEqual([]);
    expect(aborted).toBe(jobs.length / 4);

    expect(Number(/^lori_lane_swaps_total (\d+)/m.exec(await metricsText(core))?.[1] ?? 0)).toBeGreaterThan(0);
    // Every sequence comes back once the aborted generations settle; the deadline only guards against a hang.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !/^lori_sequences_busy 0$/m.test(await metricsText(core))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await metricsText(core)).toMatch(/^lori_sequences_busy 0$/m);
  });
});

describe("hot swap while requests stream: replace, delete and merge (demo model)", () => {
  const dir = useTempDir();
  let core: ServerCore;
  const PROMPT = "Once upon a time";
  // Long enough that a stream usually still runs when the swap lands; the assertions hold either way.
  const TOKENS = 300;

  const complete = async (adapter: string) => {
    const r = await postJson(core, "/v1/completions", { prompt: PROMPT, max_tokens: TOKENS, temperature: 0, ignore_eos: true, adapter });
    expect(r.status, r.text).toBe(200);
    return r.json.choices[0].text as string;
  };

  /** Starts a stream and resolves once its first event arrived; `rest` resolves with the whole text. */
  async function startStream(adapter: string): Promise<{ rest: Promise<string> }> {
    const response = await core.app.request("/v1/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0, ignore_eos: true, stream: true, adapter }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = decoder.decode((await reader.read()).value ?? new Uint8Array(), { stream: true });
    const rest = (async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
        buffered += decoder.decode(chunk.value, { stream: true });
      return buffered
        .split("\n\n")
        .filter((event) => event.startsWith("data: {"))
        .map((event) => (JSON.parse(event.slice(6)) as { choices: Array<{ text: string }> }).choices[0]?.text ?? "")
        .join("");
    })();
    return { rest };
  }

  const hashOf = async (name: string) => {
    const response = await core.app.request(`/adapters/${name}`);
    return response.ok ? ((await response.json()) as { hash: string }).hash : null;
  };

  beforeAll(async () => {
    // v1 and v2 of the adapter 'live', plus reference copies under other names to compute expected outputs.
    const adaptersDir = path.join(dir.path, "adapters");
    await writeRandomAdapter({ baseGguf: demoModelPath, adaptersDir, name: "live", seed: 31 });
    await writeRandomAdapter({ baseGguf: demoModelPath, adaptersDir, name: "ref-v1", seed: 31 });
    await writeRandomAdapter({ baseGguf: demoModelPath, adaptersDir, name: "ref-v2", seed: 32 });
    core = await createInProcessServer({ contextSize: 512, maxLanes: 4 }, { adaptersDir });
  });
  afterAll(async () => core?.dispose());

  it("finishes in-flight requests on the old version while new ones use the replaced files", async () => {
    const v1 = await complete("ref-v1");
    const v2 = await complete("ref-v2");
    expect(v1).not.toBe(v2);
    expect(await complete("live")).toBe(v1);

    const before = await hashOf("live");
    const inFlight = await startStream("live");
    // Replace the files in place (atomic directory swap), then let the registry rescan.
    await writeRandomAdapter({ baseGguf: demoModelPath, adaptersDir: core.adapters.dir, name: "live", seed: 32, overwrite: true });
    await core.adapters.refresh();
    expect(await hashOf("live")).not.toBe(before);
    expect(await complete("live")).toBe(v2);
    expect(await inFlight.rest).toBe(v1);
  });

  it("lets a request finish when its adapter is deleted mid-stream; later requests get 404", async () => {
    const expected = await complete("ref-v1");
    const inFlight = await startStream("ref-v1");
    const deleted = await core.app.request("/adapters/ref-v1", { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await inFlight.rest).toBe(expected);
    const after = await postJson(core, "/v1/completions", { prompt: PROMPT, max_tokens: 2, adapter: "ref-v1" });
    expect(after.status).toBe(404);
    expect(after.json.error).toMatchObject({ code: "adapter_not_found", param: "adapter" });
  });

  it("keeps streaming while a merge creates a new adapter that is usable at once", async () => {
    const expected = await complete("ref-v2");
    const inFlight = await startStream("ref-v2");
    const merged = await postJson(core, "/adapters/merge", {
      method: "cat",
      name: "merged",
      adapters: [
        { name: "ref-v2", weight: 0.5 },
        { name: "live", weight: 0.5 },
      ],
    });
    expect(merged.status).toBe(201);
    expect((await complete("merged")).length).toBeGreaterThan(0);
    expect(await inFlight.rest).toBe(expected);
  });
});

/** node-llama-cpp's own greedy text for `prompt` on a context (up to 24 tokens, ending at an end-of-generation token). */
async function directGreedy(model: LlamaModel, context: LlamaContext, prompt: string): Promise<string> {
  const sequence = context.getSequence();
  const tokens = [model.tokens.bos!, ...model.tokenize(prompt, false)];
  const out: Token[] = [];
  try {
    for await (const token of sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true })) {
      if (model.isEogToken(token)) break;
      out.push(token);
      if (out.length >= 24) break;
    }
  } finally {
    sequence.dispose();
  }
  return model.detokenize(out, false, tokens);
}

describe("served adapters equal node-llama-cpp with the compiled GGUF LoRAs loaded directly (demo model, demo adapters)", () => {
  const dir = useTempDir();
  const PROMPTS = ["Once upon a time", "Q: 7 + 5?\nA:", "function add(a, b) {"];
  let core: ServerCore;
  let model: LlamaModel;
  const compiled = new Map<string, string>();

  beforeAll(async () => {
    core = await createInProcessServer();
    // Each demo adapter compiled on its own, straight from its committed files (not through the server).
    const header = await readGgufFile(demoModelPath);
    for (const name of ["math", "code"]) {
      const file = path.join(dir.path, `${name}.gguf`);
      await compileGgufLora(await readAdapterDir(path.join(demoAdaptersDir, name)), header, file);
      compiled.set(name, file);
    }
    model = await (await getTestLlama()).loadModel({ modelPath: demoModelPath });
  });
  afterAll(async () => {
    await core?.dispose();
    await model?.dispose();
  });

  const complete = async (body: Record<string, unknown>) => {
    const r = await postJson(core, "/v1/completions", { max_tokens: 24, temperature: 0, ...body });
    expect(r.status, r.text).toBe(200);
    return r.json.choices[0].text as string;
  };

  it("one adapter per request (adapter field or model name) generates what a context with that LoRA at scale 1 generates", async () => {
    const context = await model.createContext({
      contextSize: 256,
      threads: 1,
      lora: { adapters: [{ filePath: compiled.get("math")!, scale: 1 }] },
    });
    try {
      for (const prompt of PROMPTS) {
        const direct = await directGreedy(model, context, prompt);
        expect(await complete({ prompt, adapter: "math" })).toBe(direct);
        expect(await complete({ prompt, model: "math" })).toBe(direct);
      }
    } finally {
      await context.dispose();
    }
  });

  it("POST /adapters/merge cat (0.7, -1.3) serves the same greedy text as a context stacking math and code at those scales", async () => {
    const merge = await postJson(core, "/adapters/merge", {
      method: "cat",
      name: "mc",
      adapters: [
        { name: "math", weight: 0.7 },
        { name: "code", weight: -1.3 },
      ],
    });
    expect(merge.status).toBe(201);
    expect(merge.json).toMatchObject({ id: "mc", parent: "lori-demo" });
    expect((merge.json.lori.lineage as Array<{ op: string }>).at(-1)!.op).toContain("merge");

    const context = await model.createContext({
      contextSize: 256,
      threads: 1,
      lora: {
        adapters: [
          { filePath: compiled.get("math")!, scale: 0.7 },
          { filePath: compiled.get("code")!, scale: -1.3 },
        ],
      },
    });
    try {
      for (const prompt of PROMPTS) {
        const stacked = await directGreedy(model, context, prompt);
        expect(await complete({ prompt, adapter: ["mc"] })).toBe(stacked);
        expect(await complete({ prompt, model: "mc" })).toBe(stacked);
        // The same weights requested per call (stacked by the server) give it too.
        expect(
          await complete({
            prompt,
            adapter: [
              { name: "math", weight: 0.7 },
              { name: "code", weight: -1.3 },
            ],
          }),
        ).toBe(stacked);
        expect(await complete({ prompt })).not.toBe(stacked);
      }
    } finally {
      await context.dispose();
    }
  });
});
