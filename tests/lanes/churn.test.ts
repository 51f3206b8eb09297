import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";

type AdapterField = undefined | string[];

const SETS: Array<{ label: string; adapter: AdapterField }> = [
  { label: "base", adapter: undefined },
  { label: "a", adapter: ["a"] },
  { label: "b", adapter: ["b"] },
  { label: "a+b", adapter: ["a", "b"] },
];
const PROMPTS = ["Once upon a time", "The little dog", "Tom and Sue went", "One day, a bird"];

/**
 * Issue 10, defect 4 over HTTP: streams aborted mid-decode while other requests take their sequences and
 * force lane swaps (4 sets on 2 lanes of 2 sequences, 8 in flight). Every request that is not aborted must
 * succeed with the text it gets alone; on round 1's code some came back corrupted.
 */
describe.skipIf(skipWithoutStories)("aborting streams under lane churn (stories260K)", () => {
  const dir = useTempDir();
  let t: TestServer;

  beforeAll(async () => {
    for (const [name, seed] of [
      ["a", 51],
      ["b", 52],
    ] as const) {
      await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name, seed, bScale: 0.6 });
    }
    t = await startTestServer({ models: [`stories=${storiesModelPath}`], adaptersDir: dir.path, parallel: 2, maxLanes: 2, maxQueue: 1000 });
  });
  afterAll(async () => t?.server.close());

  const body = (adapter: AdapterField, prompt: string, extra: Record<string, unknown>) =>
    JSON.stringify({ model: "stories", prompt, temperature: 0, ...(adapter ? { adapter } : {}), ...extra });

  /** Greedy completion with the top-2 gap per position (to tell a near-tie from a real difference). */
  async function complete(
    adapter: AdapterField,
    prompt: string,
  ): Promise<{ status: number; text: string; tokens: string[]; gaps: number[] }> {
    const response = await fetch(`${t.baseUrl}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body(adapter, prompt, { max_tokens: 24, logprobs: 2 }),
    });
    if (response.status !== 200) return { status: response.status, text: await response.text(), tokens: [], gaps: [] };
    const json = (await response.json()) as {
      choices: Array<{ text: string; logprobs: { tokens: string[]; top_logprobs: Array<Record<string, number>> } }>;
    };
    const choice = json.choices[0]!;
    const gaps = choice.logprobs.top_logprobs.map((top) => {
      const values = Object.values(top).sort((x, y) => y - x);
      return values.length > 1 ? values[0]! - values[1]! : Infinity;
    });
    return { status: 200, text: choice.text, tokens: choice.logprobs.tokens, gaps };
  }

  /** A long stream, aborted by the client after its second event (the server is mid-decode then). */
  async function abortedStream(adapter: AdapterField, prompt: string): Promise<number> {
    const controller = new AbortController();
    const response = await fetch(`${t.baseUrl}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body(adapter, prompt, { max_tokens: 200, stream: true, ignore_eos: true }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    let events = 0;
    const decoder = new TextDecoder();
    while (events < 2) {
      const chunk = await reader.read();
      if (chunk.done) break;
      events += decoder.decode(chunk.value).split("data: ").length - 1;
    }
    controller.abort();
    await reader.cancel().catch(() => undefined);
    return response.status;
  }

  it("answers every request that is not aborted with its text alone, while a quarter of the streams abort mid-decode", async () => {
    const alone = new Map<string, Awaited<ReturnType<typeof complete>>>();
    for (const set of SETS) for (const prompt of PROMPTS) alone.set(`${set.label}|${prompt}`, await complete(set.adapter, prompt));
    expect(new Set(SETS.map((s) => alone.get(`${s.label}|${PROMPTS[0]}`)!.text)).size).toBe(SETS.length);

    const jobs = Array.from({ length: 6 }, () => SETS.flatMap((set) => PROMPTS.map((prompt) => ({ set, prompt })))).flat();
    let state = 11;
    for (let i = jobs.length - 1; i > 0; i--) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      const j = state % (i + 1);
      [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
    }
    const failures: string[] = [];
    const nearTies: string[] = [];
    let aborted = 0;
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const index = next++;
        const { set, prompt } = jobs[index]!;
        const key = `${set.label}|${prompt}`;
        if (index % 4 === 0) {
          const status = await abortedStream(set.adapter, prompt);
          if (status !== 200) failures.push(`${key}: aborted stream got ${status}`);
          aborted++;
          continue;
        }
        const got = await complete(set.adapter, prompt);
        const want = alone.get(key)!;
        if (got.status !== 200) failures.push(`${key}: ${got.status} ${got.text}`);
        else if (got.text !== want.text) {
          const position = want.tokens.findIndex((token, i) => got.tokens[i] !== token);
          if ((want.gaps[position] ?? Infinity) < 1e-3) nearTies.push(key);
          else failures.push(`${key}: alone ${JSON.stringify(want.text)} vs under churn ${JSON.stringify(got.text)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    console.info(
      `churn: ${jobs.length} requests, ${aborted} aborted mid-stream, ${failures.length} failures, ${nearTies.length} near ties`,
    );
    expect(failures).toEqual([]);
    expect(aborted).toBe(jobs.length / 4);

    const metrics = await (await fetch(`${t.baseUrl}/metrics`)).text();
    expect(Number(/^lori_lane_swaps_total (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
    // Every sequence came back once the aborted generations settled.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !/^lori_sequences_busy 0$/m.test(await (await fetch(`${t.baseUrl}/metrics`)).text())) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await (await fetch(`${t.baseUrl}/metrics`)).text()).toMatch(/^lori_sequences_busy 0$/m);
  });
});
