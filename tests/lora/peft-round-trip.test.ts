// The same PEFT directory must come out the same whichever way it enters: `lori-server import` or a multipart
// upload to POST /adapters. And our own adapters must survive export --format peft -> import unchanged in
// structure (seeded A, sparse B), not triple in size. Runs on the committed demo model and its math adapter.
import { existsSync } from "node:fs";
import { cp, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportCommand } from "../../src/cli/commands/export.js";
import { importCommand } from "../../src/cli/commands/import.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { readAdapterDir, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { DEMO_MODEL_PATH } from "../../src/model/embedded-model.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { moduleShapesOfGguf, randomPeftTensors, runCli, writePeftDir } from "./peft-fixtures.js";

const DEMO_ADAPTER = fileURLToPath(new URL("../../adapters/math", import.meta.url));

async function ok(command: typeof importCommand, argv: string[]): Promise<string> {
  const result = await runCli(command, argv);
  if (result.error) throw result.error;
  return result.stdout;
}

describe.skipIf(!existsSync(DEMO_MODEL_PATH))("PEFT directories in and out", () => {
  const tmp = useTempDir();
  const store = () => join(tmp.path, "adapters");
  let t: TestServer;

  beforeAll(async () => {
    // A copy of the demo adapter, so the test store holds a seeded LoRI-S adapter of our own format.
    await cp(DEMO_ADAPTER, join(store(), "math"), { recursive: true });
    const shapes = moduleShapesOfGguf(await readGgufFile(DEMO_MODEL_PATH));
    // A published-style LoRI-S adapter: PEFT layout, no lori block, B dense with 90 % exact zeros.
    await writePeftDir(join(tmp.path, "peft-loris"), {
      rank: 8,
      alpha: 16,
      tensors: randomPeftTensors(shapes, { rank: 8, seed: 11, zeroFraction: 0.9 }),
    });
    t = await startTestServer({ adaptersDir: store(), adaptersPollMs: 0 });
  });

  afterAll(async () => {
    await t?.server.close();
  });

  async function upload(
    name: string,
    dir: string,
  ): Promise<{ status: number; body: { lori: { variant: string; sparsity: number; seed: number | null }; bytes: number } }> {
    const form = new FormData();
    form.set("name", name);
    for (const file of ["adapter_config.json", WEIGHTS_FILE]) form.set(file, new Blob([await readFile(join(dir, file))]), file);
    const response = await fetch(`${t.baseUrl}/adapters`, { method: "POST", body: form });
    return { status: response.status, body: (await response.json()) as never };
  }

  it("export --format peft -> import restores the seeded A and the sparse B, at the original size", async () => {
    const original = await readAdapterDir(join(store(), "math"));
    expect(original.config.lori?.variant).toBe("lori-s");
    const seed = original.config.lori?.a_init?.seed;
    expect(seed).toEqual(expect.any(Number));

    const exported = join(tmp.path, "math-peft");
    await ok(exportCommand, ["math", "--format", "peft", "--out", exported, "--adapters-dir", store()]);
    const out = await ok(importCommand, [exported, "--name", "math-again", "--base", DEMO_MODEL_PATH, "--adapters-dir", store()]);
    expect(out).toMatch(/lori-s, .* A seeded/);

    const back = await readAdapterDir(join(store(), "math-again"));
    expect(back.config.lori).toMatchObject({ variant: "lori-s", a_init: { seed } });
    expect(back.config.lori!.sparsity).toBeCloseTo(original.config.lori!.sparsity, 2);
    expect(back.modules.every((m) => m.a.kind === "seeded" && m.mask)).toBe(true);
    back.modules.forEach((m, i) => expect(m.b).toEqual(original.modules[i]!.b));
    const [before, after, dense] = await Promise.all(
      [join(store(), "math"), join(store(), "math-again"), exported].map(async (d) => (await stat(join(d, WEIGHTS_FILE))).size),
    );
    expect(dense).toBeGreaterThan(4 * before!);
    expect(after).toBeLessThanOrEqual(before! * 1.02);
  });

  it("upload and import report the same variant, sparsity and seed for the same PEFT directory", async () => {
    for (const [name, dir] of [
      ["loris", join(tmp.path, "peft-loris")],
      ["math-peft", join(tmp.path, "math-peft")],
    ] as const) {
      await ok(importCommand, [dir, "--name", `${name}-imported`, "--base", DEMO_MODEL_PATH, "--adapters-dir", store()]);
      const imported = (await readAdapterDir(join(store(), `${name}-imported`))).config.lori!;
      const uploaded = await upload(`${name}-uploaded`, dir);
      expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
      expect(uploaded.body.lori.variant).toBe("lori-s");
      expect(uploaded.body.lori).toMatchObject({ variant: imported.variant, seed: imported.a_init?.seed ?? null });
      expect(uploaded.body.lori.sparsity).toBeCloseTo(imported.sparsity, 10);
      expect(uploaded.body.lori.sparsity).toBeGreaterThan(0.85);
      const stored = await readAdapterDir(join(store(), `${name}-uploaded`));
      expect(stored.modules.every((m) => m.mask)).toBe(true);
    }
  });

  it("an upload already in our format is stored byte for byte", async () => {
    const uploaded = await upload("math-copy", join(store(), "math"));
    expect(uploaded.status).toBe(201);
    for (const file of ["adapter_config.json", WEIGHTS_FILE]) {
      expect((await readFile(join(store(), "math-copy", file))).equals(await readFile(join(store(), "math", file)))).toBe(true);
    }
  });
});
