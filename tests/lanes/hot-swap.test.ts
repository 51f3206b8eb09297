import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { skipWithoutStories, startTestServer, storiesModelPath, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";

const PROMPT = "Once upon a time";
const TOKENS = 400;

describe.skipIf(skipWithoutStories)("hot swap under load: replace, delete and merge while requests stream (stories260K)", () => {
  const dir = useTempDir();
  let t: TestServer;

  beforeAll(async () => {
    // v1 and v2 of the adapter 'live', plus reference copies under other names to compute expected outputs.
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "live", seed: 31 });
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "ref-v1", seed: 31 });
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "ref-v2", seed: 32 });
    t = await startTestServer({ models: [`stories=${storiesModelPath}`], adaptersDir: dir.path, adaptersPollMs: 50, maxLanes: 4 });
  });
  afterAll(async () => t?.server.close());

  async function complete(adapter: string): Promise<string> {
    const r = await t.client.completions.create({
      model: "stories",
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      ignore_eos: true,
      adapter,
    } as never);
    return r.choices[0]!.text;
  }

  /** Starts a stream and resolves once the first chunk arrived; `rest` resolves with the full text. */
  async function startStream(adapter: string): Promise<{ rest: Promise<string> }> {
    const stream = await t.client.completions.create({
      model: "stories",
      prompt: PROMPT,
      max_tokens: TOKENS,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      adapter,
    } as never);
    const iterator = (stream as unknown as AsyncIterable<{ choices: Array<{ text: string }> }>)[Symbol.asyncIterator]();
    const first = await iterator.next();
    const rest = (async () => {
      let text = first.done ? "" : (first.value.choices[0]?.text ?? "");
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) text += next.value.choices[0]?.text ?? "";
      return text;
    })();
    return { rest };
  }

  async function waitForHash(name: string, changedFrom: string | null): Promise<void> {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const response = await fetch(`${t.baseUrl}/adapters/${name}`);
      const hash = response.ok ? ((await response.json()) as { hash: string }).hash : null;
      if (hash !== changedFrom) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`adapter ${name} did not change`);
  }

  it("finishes in-flight requests on the old version while new ones use the replaced files", async () => {
    const v1 = await complete("ref-v1");
    const v2 = await complete("ref-v2");
    expect(v1).not.toBe(v2);
    expect(await complete("live")).toBe(v1);

    const before = ((await (await fetch(`${t.baseUrl}/adapters/live`)).json()) as { hash: string }).hash;
    const inFlight = await startStream("live");
    // Replace the files in place (atomic directory swap); the registry notices by polling.
    await writeRandomAdapter({ baseGguf: storiesModelPath!, adaptersDir: dir.path, name: "live", seed: 32, overwrite: true });
    await waitForHash("live", before);
    expect(await complete("live")).toBe(v2);
    expect(await inFlight.rest).toBe(v1);
  });

  it("lets a request finish when its adapter is deleted mid-stream; later requests get 404", async () => {
    const expected = await complete("ref-v1");
    const inFlight = await startStream("ref-v1");
    const deleted = await fetch(`${t.baseUrl}/adapters/ref-v1`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await inFlight.rest).toBe(expected);
    await expect(complete("ref-v1")).rejects.toMatchObject({ status: 404, code: "adapter_not_found" });
  });

  it("keeps streaming while a merge creates a new adapter that is usable at once", async () => {
    const expected = await complete("ref-v2");
    const inFlight = await startStream("ref-v2");
    const merged = await fetch(`${t.baseUrl}/adapters/merge`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        method: "cat",
        name: "merged",
        adapters: [
          { name: "ref-v2", weight: 0.5 },
          { name: "live", weight: 0.5 },
        ],
      }),
    });
    expect(merged.status).toBe(201);
    expect((await complete("merged")).length).toBeGreaterThan(0);
    expect(await inFlight.rest).toBe(expected);
  });
});
