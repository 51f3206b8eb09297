import { cpSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTinyModel } from "../../src/model/tiny-model.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { writeRandomAdapter } from "../support/adapter-fixtures.js";
import { createInProcessServer, demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { useTempDir } from "../support/temp-dir.js";

// The adapter registry, its HTTP API, per-key access and the metrics names, on the committed demo model and its
// four adapters, in process: every clone runs it.

const ADMIN = "admin-key-0001";
const USER = "user-key-0001";
const DEMO_ADAPTERS = ["code", "math", "nlu", "safety"];

describe("adapter registry, API, access control and metrics (demo model, in process)", () => {
  const dir = useTempDir();
  let core: ServerCore;
  let adaptersDir: string;
  let outsideDir: string;

  const call = async (route: string, init: RequestInit & { key?: string } = {}) => {
    const response = await core.app.request(route, {
      ...init,
      headers: {
        ...(init.body && typeof init.body === "string" ? { "Content-Type": "application/json" } : {}),
        Authorization: `Bearer ${init.key ?? ADMIN}`,
        ...(init.headers ?? {}),
      },
    });
    const text = await response.text();
    return { status: response.status, json: text.startsWith("{") ? (JSON.parse(text) as Record<string, any>) : null, text };
  };
  const complete = (body: Record<string, unknown>, key = ADMIN) =>
    call("/v1/completions", {
      method: "POST",
      key,
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 8, ignore_eos: true, temperature: 0, ...body }),
    });
  const upload = (form: FormData) =>
    core.app.request("/adapters", { method: "POST", body: form, headers: { Authorization: `Bearer ${ADMIN}` } });

  beforeAll(async () => {
    adaptersDir = path.join(dir.path, "adapters");
    outsideDir = path.join(dir.path, "elsewhere");
    for (const name of DEMO_ADAPTERS) cpSync(path.join(demoAdaptersDir, name), path.join(adaptersDir, name), { recursive: true });
    await writeRandomAdapter({ baseGguf: demoModelPath, adaptersDir: outsideDir, name: "outside", seed: 43 });
    // An adapter built for a different base model (other shapes): it fits no served model.
    const otherBase = path.join(dir.path, "other.gguf");
    await createTinyModel({ out: otherBase, layers: 5, embd: 64, heads: 8, kvHeads: 4, ff: 172 });
    await writeRandomAdapter({ baseGguf: otherBase, adaptersDir, name: "foreign", seed: 44 });
    const keysFile = path.join(dir.path, "keys.json");
    await writeFile(
      keysFile,
      JSON.stringify({
        keys: [
          { key: ADMIN, role: "admin" },
          { key: USER, role: "user", adapters: ["math"] },
        ],
      }),
    );
    core = await createInProcessServer({ keysFile }, { adaptersDir });
  });
  afterAll(async () => core?.dispose());

  it("lists adapters and exposes them as models whose parent is the base, as their configs describe them", async () => {
    const list = await call("/adapters");
    // 'foreign' fits no served model: the registry never lists it.
    expect(list.json!.data.map((a: { id: string }) => a.id).sort()).toEqual(DEMO_ADAPTERS);
    const config = JSON.parse(readFileSync(path.join(demoAdaptersDir, "safety", "adapter_config.json"), "utf8")) as {
      r: number;
      lori: { variant: string; sparsity: number; a_init: { seed: number } };
    };
    const safety = await call("/adapters/safety");
    expect(safety.json).toMatchObject({
      id: "safety",
      object: "adapter",
      parent: "lori-demo",
      lori: { variant: config.lori.variant, rank: config.r, seed: config.lori.a_init.seed },
    });
    expect(safety.json!.lori.sparsity).toBeCloseTo(config.lori.sparsity, 6);
    expect(typeof safety.json!.hash).toBe("string");
    const models = await call("/v1/models");
    const ids = models.json!.data.map((m: { id: string; parent: string | null }) => `${m.id}:${m.parent}`);
    expect(ids).toEqual(expect.arrayContaining(["lori-demo:null", ...DEMO_ADAPTERS.map((a) => `${a}:lori-demo`)]));
    expect(ids.some((id: string) => id.startsWith("foreign:"))).toBe(false);
    expect((await call("/adapters/nope")).status).toBe(404);
  });

  it("validates the adapter field: unknown 404, duplicate or zero weight 400, foreign base not listed (404)", async () => {
    expect((await complete({ adapter: "math" })).status).toBe(200);
    expect((await complete({ adapter: ["math", { name: "safety", weight: -0.5 }] })).status).toBe(200);
    const unknown = await complete({ adapter: ["math", "ghost"] });
    expect(unknown.status).toBe(404);
    expect(unknown.json!.error).toMatchObject({ code: "adapter_not_found", param: "adapter" });
    const duplicate = await complete({ adapter: ["math", "math"] });
    expect(duplicate.status).toBe(400);
    expect(duplicate.json!.error.param).toMatch(/^adapter/);
    const zero = await complete({ adapter: [{ name: "math", weight: 0 }] });
    expect(zero.status).toBe(400);
    expect(zero.json!.error.param).toMatch(/^adapter/);
    const foreign = await complete({ adapter: "foreign" });
    expect(foreign.status).toBe(404);
    expect(foreign.json!.error.code).toBe("adapter_not_found");
    expect((await complete({ model: "math" })).status).toBe(200);
  });

  it("registers by path (inside the store or an allowed root only), by upload, refuses duplicates, deletes", async () => {
    const outside = await call("/adapters", {
      method: "POST",
      body: JSON.stringify({ name: "outside", path: path.join(outsideDir, "outside") }),
    });
    expect(outside.status).toBe(400);
    expect(outside.json!.error.param).toBe("path");
    // The answer names no server path.
    expect(outside.text).not.toContain(dir.path);
    const dup = await call("/adapters", { method: "POST", body: JSON.stringify({ name: "math", path: path.join(adaptersDir, "math") }) });
    expect(dup.status).toBe(409);
    const badName = await call("/adapters", {
      method: "POST",
      body: JSON.stringify({ name: "../x", path: path.join(adaptersDir, "math") }),
    });
    expect(badName.status).toBe(400);
    const alias = await call("/adapters", {
      method: "POST",
      body: JSON.stringify({ name: "math2", path: path.join(adaptersDir, "math") }),
    });
    expect(alias.status).toBe(201);
    expect(alias.json!.hash).toBe((await call("/adapters/math")).json!.hash);

    const form = new FormData();
    for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
      form.set(file, new Blob([await readFile(path.join(outsideDir, "outside", file))]), file);
    }
    form.set("name", "uploaded");
    const uploaded = await upload(form);
    expect(uploaded.status).toBe(201);
    expect((await complete({ adapter: "uploaded" })).status).toBe(200);

    const broken = new FormData();
    broken.set("name", "broken");
    broken.set("adapter_config.json", new Blob(["{}"]), "adapter_config.json");
    broken.set("adapter_model.safetensors", new Blob([new Uint8Array(16)]), "adapter_model.safetensors");
    expect((await upload(broken)).status).toBe(400);
    expect((await call("/adapters/broken")).status).toBe(404);

    expect((await call("/adapters/uploaded", { method: "DELETE" })).status).toBe(200);
    expect((await call("/adapters/uploaded")).status).toBe(404);
    expect((await complete({ adapter: "uploaded" })).status).toBe(404);
  });

  it("keeps a user key inside its allow-list and away from admin operations", async () => {
    const list = await call("/adapters", { key: USER });
    expect(list.json!.data.map((a: { id: string }) => a.id)).toEqual(["math"]);
    expect((await call("/adapters/safety", { key: USER })).status).toBe(404);
    expect((await complete({ adapter: "math" }, USER)).status).toBe(200);
    expect((await complete({ adapter: "safety" }, USER)).status).toBe(404);
    expect((await complete({ model: "safety" }, USER)).status).toBe(404);
    const models = await call("/v1/models", { key: USER });
    expect(models.json!.data.map((m: { id: string }) => m.id)).toEqual(["lori-demo", "math"]);
    const merge = await call("/adapters/merge", {
      method: "POST",
      key: USER,
      body: JSON.stringify({ method: "cat", name: "x", adapters: [{ name: "math" }] }),
    });
    expect(merge.status).toBe(403);
    expect((await call("/adapters/math", { method: "DELETE", key: USER })).status).toBe(403);
    expect((await call("/adapters/math")).status).toBe(200);
    expect((await call("/adapters", { key: "wrong-key-000" })).status).toBe(401);
  });

  it("exports Prometheus metrics with the inference-gateway aliases", async () => {
    expect((await complete({ adapter: "math" })).status).toBe(200);
    const metrics = await call("/metrics");
    for (const name of [
      "lori_requests_total",
      "lori_generation_tokens_total",
      "lori_time_to_first_token_seconds_bucket",
      "lori_request_duration_seconds_bucket",
      "lori_queue_depth",
      "lori_lanes",
      "lori_lane_swaps_total",
      "lori_adapter_loads_total",
      "lori_adapter_bytes_resident",
      "vllm:num_requests_waiting",
      "vllm:gpu_cache_usage_perc",
      "vllm:lora_requests_info",
    ]) {
      expect(metrics.text).toContain(name);
    }
    expect(metrics.text).toMatch(/lori_requests_total\{adapter_set="math",finish_reason="length",route="completions"\} [1-9]/);
    expect(metrics.text).toMatch(
      /vllm:lora_requests_info\{max_lora="\d+",running_lora_adapters="[^"]*",waiting_lora_adapters="[^"]*"\} \d+/,
    );
  });
});
