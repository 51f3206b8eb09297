import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";

type AdapterField = undefined | string | Array<string | { name: string; weight: number }>;

interface Outcome {
  text: string;
  tokens: string[];
  /** top-1 minus top-2 logprob at each position (the logit gap under greedy decoding). */
  gaps: number[];
}

const SETS: Array<{ label: string; adapter: AdapterField }> = [
  { label: "base", adapter: undefined },
  { label: "a", adapter: "a" },
  { label: "b", adapter: ["b"] },
  { label: "c", adapter: [{ name: "c", weight: 1 }] },
  { label: "a+b stacked", adapter: ["a", "b"] },
  {
    label: "a*0.7 + c*-1.3 weighted",
    adapter: [
      { name: "a", weight: 0.7 },
      { name: "c", weight: -1.3 },
    ],
  },
];
const PROMPTS = [
  "Once upon a time",
  "The little dog",
  "Tom and Sue went",
  "One day, a bird",
  "The sun was",
  "Lily had a red",
  "In the park",
  "Mom said",
];

describe.skipIf(skipWithoutStories)("no cross-talk between adapter sets under concurrency (stories260K)", () => {
  const dir = useTempDir();
  let t: TestServer;

  beforeAll(async () => {
    for (const [name, seed] of [
      ["a", 11],
      ["b", 12],
      ["c", 13],
    ] as const) {
      await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name, seed, bScale: 0.6 });
    }
    // 6 sets on at most 3 lanes of 4 sequences: requests batch within a set and lanes are swapped between sets.
    t = await startTestServer({ models: [`stories=${storiesModelPath}`], adaptersDir: dir.path, parallel: 4, maxLanes: 3, maxQueue: 1000 });
  });
  afterAll(async () => t?.server.close());

  async function run(adapter: AdapterField, prompt: string): Promise<Outcome> {
    const response = await t.client.completions.create({
      model: "stories",
      prompt,
      max_tokens: 16,
      temperature: 0,
      logprobs: 2,
      ...(adapter === undefined ? {} : { adapter }),
    } as never);
    const logprobs = response.choices[0]!.logprobs!;
    const gaps = logprobs.top_logprobs!.map((top) => {
      const values = Object.values(top).sort((x, y) => y - x);
      return values.length > 1 ? values[0]! - values[1]! : Infinity;
    });
    return { text: response.choices[0]!.text, tokens: logprobs.tokens!, gaps };
  }

  it("gives every one of 240 requests, 16 in flight over 6 sets, the output it gets alone", async () => {
    const alone = new Map<string, Outcome>();
    for (const set of SETS) for (const prompt of PROMPTS) alone.set(`${set.label}|${prompt}`, await run(set.adapter, prompt));
    // Sanity: the sets really differ (otherwise the test could not see cross-talk).
    const firstPromptTexts = new Set(SETS.map((s) => alone.get(`${s.label}|${PROMPTS[0]}`)!.text));
    expect(firstPromptTexts.size).toBe(SETS.length);

    const jobs = Array.from({ length: 5 }, () => SETS.flatMap((set) => PROMPTS.map((prompt) => ({ set, prompt })))).flat();
    // Deterministic shuffle so adjacent requests use different sets.
    let state = 7;
    for (let i = jobs.length - 1; i > 0; i--) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      const j = state % (i + 1);
      [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
    }
    const mismatches: string[] = [];
    const nearTies: Array<{ key: string; position: number; gap: number }> = [];
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const { set, prompt } = jobs[next++]!;
        const key = `${set.label}|${prompt}`;
        const got = await run(set.adapter, prompt);
        const want = alone.get(key)!;
        if (got.text === want.text) continue;
        const position = want.tokens.findIndex((token, i) => got.tokens[i] !== token);
        const gap = want.gaps[position] ?? Infinity;
        if (gap < 1e-3) nearTies.push({ key, position, gap });
        else mismatches.push(`${key}: alone ${JSON.stringify(want.text)} vs concurrent ${JSON.stringify(got.text)} (gap ${gap})`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    console.info(
      `no-cross-talk: ${jobs.length} requests, ${mismatches.length} mismatches, ${nearTies.length} near-tie divergences ${JSON.stringify(nearTies)}`,
    );
    expect(mismatches).toEqual([]);
    expect(jobs.length).toBe(240);

    const metrics = await (await fetch(`${t.baseUrl}/metrics`)).text();
    const swaps = Number(/^lori_lane_swaps_total (\d+)/m.exec(metrics)?.[1] ?? 0);
    expect(swaps).toBeGreaterThan(0);
  });
});
