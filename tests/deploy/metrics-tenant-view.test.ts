import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, postJson } from "../support/in-process.js";

// The LoRA info gauge under our own name carries a fourth list, resident_lora_adapters. A key with an adapter
// allow-list must learn no more from it than from the other two: every list is filtered to what it may use.

const ADMIN = "admin-key-0001";
const MATH_ONLY = "math-only-0001";
let core: ServerCore;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "lori-tenant-metrics-"));
  const keysFile = path.join(work, "keys.json");
  writeFileSync(
    keysFile,
    JSON.stringify({
      keys: [
        { key: ADMIN, role: "admin" },
        { key: MATH_ONLY, role: "user", adapters: ["math"] },
      ],
    }),
  );
  core = await createInProcessServer({ keysFile, maxLanes: 2 });
}, 120_000);

afterAll(async () => {
  await core?.dispose();
  rmSync(work, { recursive: true, force: true });
});

async function loraInfo(key: string) {
  const response = await core.app.request("/metrics", { headers: { Authorization: `Bearer ${key}` } });
  expect(response.status).toBe(200);
  const family = parsePrometheusTextFormat(await response.text()).find((f) => f.name === "lori_lora_requests_info");
  return family!.metrics[0]!.labels!;
}

describe("lori_lora_requests_info seen by a key with an allow-list", () => {
  it("lists only the adapters the key may use, in every list", async () => {
    for (const model of ["math", "code"]) {
      const done = await postJson(core, "/v1/completions", { model, prompt: "2+2=", max_tokens: 4 }, { Authorization: `Bearer ${ADMIN}` });
      expect(done.status).toBe(200);
    }
    // Two lanes, each left bound to the set it last ran: both are resident, neither is running now.
    const admin = await loraInfo(ADMIN);
    expect(admin.resident_lora_adapters!.split(",").sort()).toEqual(["code", "math"]);
    const limited = await loraInfo(MATH_ONLY);
    expect(limited.resident_lora_adapters).toBe("math");
    expect(limited.running_lora_adapters).toBe("");
    expect(limited.waiting_lora_adapters).toBe("");
    expect(limited.max_lora).toBe("2");
  });
});
