import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";

async function scrape(core: ServerCore, key?: string): Promise<string> {
  const response = await core.app.request("/metrics", key ? { headers: { Authorization: `Bearer ${key}` } } : {});
  expect(response.status).toBe(200);
  return response.text();
}

describe("/metrics stays bounded and per-tenant", () => {
  let core: ServerCore;
  const keysFile = join(mkdtempSync(join(tmpdir(), "lori-keys-")), "keys.json");

  beforeAll(async () => {
    writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [
          { key: "admin-key", role: "admin" },
          { key: "math-user", role: "user", adapters: ["math"] },
        ],
      }),
    );
    core = await createInProcessServer({ metricsMaxAdapterSets: 4, keysFile, parallel: 2, maxLanes: 2 });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("keeps the number of adapter_set labels at the limit however many weights a client invents", async () => {
    const admin = { Authorization: "Bearer admin-key" };
    expect((await postJson(core, "/v1/completions", { prompt: "x", max_tokens: 1, adapter: ["math"] }, admin)).status).toBe(200);
    for (let i = 1; i <= 24; i++) {
      const adapter = [
        { name: "math", weight: 0.01 * i },
        { name: "safety", weight: 1 },
      ];
      const r = await postJson(core, "/v1/completions", { prompt: "Q: 1 + 1?\nA:", max_tokens: 1, adapter }, admin);
      expect(r.status).toBe(200);
    }
    const text = await scrape(core, "admin-key");
    const sets = new Set([...text.matchAll(/adapter_set="([^"]*)"/g)].map((m) => m[1]));
    // "math" and the first 3 weighted sets have their own label; the other 21 share "(other)".
    expect([...sets].sort()).toEqual(["(other)", "math", "math*0.01+safety", "math*0.02+safety", "math*0.03+safety"]);
    const other = [...text.matchAll(/lori_requests_total\{adapter_set="\(other\)",[^}]*\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(other).toBe(21);
    const before = text.split("\n").length;
    for (let i = 25; i <= 34; i++) {
      await postJson(
        core,
        "/v1/completions",
        { prompt: "x", max_tokens: 1, adapter: [{ name: "math", weight: 0.01 * i }, "safety"] },
        admin,
      );
    }
    // Only a new finish_reason for "(other)" could add series; no new set labels appear.
    expect((await scrape(core, "admin-key")).split("\n").length).toBeLessThanOrEqual(before + 1);
  });

  it("shows a user key no adapter set that names an adapter outside its allow-list", async () => {
    const user = { Authorization: "Bearer math-user" };
    expect((await postJson(core, "/v1/completions", { prompt: "x", max_tokens: 1, adapter: ["math"] }, user)).status).toBe(200);
    const admin = await scrape(core, "admin-key");
    expect(admin).toContain("safety");
    const text = await scrape(core, "math-user");
    expect(text).not.toContain("safety");
    expect(text).toMatch(/adapter_set="math"/);
    expect(text).toContain("lori_lanes_created_total");
  });

  it("reports the compiled cache against its budget", async () => {
    const text = await scrape(core, "admin-key");
    const bytes = Number(/^lori_compiled_cache_bytes (\S+)$/m.exec(text)?.[1]);
    const budget = Number(/^lori_compiled_cache_budget_bytes (\S+)$/m.exec(text)?.[1]);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(budget);
    expect(Number(/^lori_compiled_cache_pinned_files (\S+)$/m.exec(text)?.[1])).toBe(0);
  });
});

describe("lori_tokens_per_decode", () => {
  it("shows same-set requests sharing each decode", async () => {
    const core = await createInProcessServer({ parallel: 4, maxLanes: 1 }, { withDemoAdapters: false });
    try {
      await Promise.all(
        Array.from({ length: 4 }, () =>
          postJson(core, "/v1/completions", { prompt: "Once upon a time", max_tokens: 24, ignore_eos: true }),
        ),
      );
      const text = await scrape(core);
      const sum = Number(/^lori_tokens_per_decode_sum (\S+)$/m.exec(text)?.[1]);
      const count = Number(/^lori_tokens_per_decode_count (\S+)$/m.exec(text)?.[1]);
      expect(count).toBeGreaterThan(0);
      // 4 prompts of ~17 tokens are decoded first; then 23 steps of 4 sequences each, when batches are full.
      const generationDecodes = text.match(/^lori_tokens_per_decode_bucket\{le="4"\} (\d+)$/m);
      expect(Number(generationDecodes?.[1])).toBeGreaterThan(0);
      expect(sum / count).toBeGreaterThan(3);
    } finally {
      await core.dispose();
    }
  });
});

describe("--public-metrics", () => {
  it("serves /metrics in full without a key, while every other route still needs one", async () => {
    const keysFile = join(mkdtempSync(join(tmpdir(), "lori-keys-")), "keys.json");
    writeFileSync(keysFile, JSON.stringify({ keys: [{ key: "admin-key", role: "admin" }] }));
    const open = await createInProcessServer({ keysFile, publicMetrics: true });
    const closed = await createInProcessServer({ keysFile });
    try {
      const scraped = await open.app.request("/metrics");
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain("lori_queue_depth");
      expect((await open.app.request("/v1/models")).status).toBe(401);
      expect((await closed.app.request("/metrics")).status).toBe(401);
    } finally {
      await open.dispose();
      await closed.dispose();
    }
  });
});
