// A DoRA adapter in the store cannot be applied per request (llama.cpp's LoRA path is W x + s B (A x); DoRA
// rescales every output row): a request naming it, and a merge including it, get one clear error that says to
// export it as a merged model. Nothing crashes, and the rest of the store keeps working.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeAdapter } from "../../src/lora/adapter.js";
import { readAdapterDir, writeAdapterDir } from "../../src/lora/adapter-io.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";

describe("serving a DoRA adapter", () => {
  const adaptersDir = mkdtempSync(join(tmpdir(), "lori-dora-serving-"));
  let core: ServerCore;

  beforeAll(async () => {
    const math = await readAdapterDir(resolve("adapters/math"));
    await writeAdapterDir(join(adaptersDir, "math"), math);
    // The math adapter with a magnitude per output row: a valid DoRA adapter for the demo model.
    const dora = makeAdapter(
      math.modules.map((m) => ({ ...m, mask: undefined, magnitude: new Float32Array(m.outFeatures).fill(1) })),
      { baseFingerprint: math.config.lori?.base_fingerprint ?? null },
    );
    await writeAdapterDir(join(adaptersDir, "style"), dora);
    core = await createInProcessServer({}, { adaptersDir });
  }, 120_000);

  afterAll(async () => {
    await core?.dispose();
    rmSync(adaptersDir, { recursive: true, force: true });
  });

  it("refuses a request naming it with one error that says how to export it", async () => {
    const response = await postJson(core, "/v1/completions", { prompt: "1+1=", max_tokens: 2, adapter: "style" });
    expect(response.status).toBe(400);
    const error = (response.json as { error: { message: string } }).error;
    expect(error.message).toMatch(/'style' is a DoRA adapter: .*lori-server export style --format merged-gguf --base MODEL\.gguf/);
    expect(error.message).not.toContain(adaptersDir);
    const plain = await postJson(core, "/v1/completions", { prompt: "1+1=", max_tokens: 2, adapter: "math" });
    expect(plain.status).toBe(200);
  });

  it("refuses to merge it with other adapters", async () => {
    const response = await postJson(core, "/adapters/merge", {
      method: "cat",
      name: "both",
      adapters: [{ name: "math" }, { name: "style" }],
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(JSON.stringify(response.json)).toMatch(/'style' is a DoRA adapter/);
  });
});
