import { execFileSync } from "node:child_process";
import { cp, lstat, mkdir, readdir, readFile, rm, stat, symlink, truncate } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONFIG_FILE, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { allModules, tinyBase, writeGoodAdapter, writeModules } from "./store-fixtures.js";

/**
 * The store over HTTP on a generated tiny model (runs without ../shared). Issue 10: defects 1 (disk), 2, 3,
 * 5 and 6, each through the public API as the hostile tenant of the issue used it.
 */

type Base = Awaited<ReturnType<typeof tinyBase>>;

async function compiledFiles(adaptersDir: string): Promise<Array<{ name: string; bytes: number }>> {
  const root = path.join(adaptersDir, ".compiled");
  const out: Array<{ name: string; bytes: number }> = [];
  for (const sub of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (!sub.isDirectory()) continue;
    for (const f of await readdir(path.join(root, sub.name))) {
      if (!f.endsWith(".gguf")) continue;
      const info = await stat(path.join(root, sub.name, f)).catch(() => null); // may be evicted meanwhile
      if (info) out.push({ name: `${sub.name}/${f}`, bytes: info.size });
    }
  }
  return out;
}

function client(t: () => TestServer) {
  const call = async (route: string, init: RequestInit = {}) => {
    const response = await fetch(`${t().baseUrl}${route}`, {
      ...init,
      headers: { ...(typeof init.body === "string" ? { "Content-Type": "application/json" } : {}), ...(init.headers ?? {}) },
    });
    const text = await response.text();
    return { status: response.status, json: text.startsWith("{") ? (JSON.parse(text) as Record<string, any>) : null, text };
  };
  const complete = (body: Record<string, unknown>) =>
    call("/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: "tiny", prompt: "hello", max_tokens: 2, temperature: 0, ...body }),
    });
  const upload = async (name: string, dir: string) => {
    const form = new FormData();
    form.set("name", name);
    form.set(CONFIG_FILE, new Blob([await readFile(path.join(dir, CONFIG_FILE))]), CONFIG_FILE);
    form.set(WEIGHTS_FILE, new Blob([await readFile(path.join(dir, WEIGHTS_FILE))]), WEIGHTS_FILE);
    return call("/adapters", { method: "POST", body: form });
  };
  const merge = (body: Record<string, unknown>) =>
    call("/adapters/merge", { method: "POST", body: JSON.stringify({ method: "cat", ...body }) });
  const names = async () => ((await call("/adapters")).json!.data as Array<{ id: string }>).map((a) => a.id);
  return { call, complete, upload, merge, names };
}

describe("the adapter store over HTTP (generated tiny model)", () => {
  const tmp = useTempDir("lori-store-http-");
  let t: TestServer;
  let base: Base;
  let adaptersDir: string;
  let rootDir: string;
  const api = client(() => t);

  beforeAll(async () => {
    base = await tinyBase(tmp.path);
    adaptersDir = path.join(tmp.path, "adapters");
    rootDir = path.join(tmp.path, "root");
    await writeGoodAdapter(path.join(adaptersDir, "math"), base, { seed: 1 });
    await writeGoodAdapter(path.join(adaptersDir, "code"), base, { seed: 2 });
    t = await startTestServer({
      models: [`tiny=${base.path}`],
      adaptersDir,
      adapterRoots: [rootDir],
      adaptersPollMs: 50,
      maxLanes: 1,
      compiledCacheMb: 1,
    });
  }, 60_000);
  afterAll(async () => t?.server.close());

  it("refuses uploads with NaN or Inf values, or that fit no served model: 400, never listed, nothing left behind", async () => {
    const nan = path.join(tmp.path, "nan");
    await writeModules(
      nan,
      allModules(base).map((m, i) => (i === 3 ? { ...m, b: m.b.map((x, j) => (j === 7 ? Number.NaN : x)) } : m)),
      base.fingerprint,
    );
    const inf = path.join(tmp.path, "inf");
    await writeModules(
      inf,
      allModules(base).map((m, i) => (i === 0 ? { ...m, b: m.b.map((x, j) => (j === 0 ? Number.POSITIVE_INFINITY : x)) } : m)),
      null,
    );
    const other = await tinyBase(tmp.path, "other.gguf", { embd: 32, heads: 4, kvHeads: 2, ff: 96 });
    const foreign = path.join(tmp.path, "foreign");
    await writeGoodAdapter(foreign, other);
    const foreignNoPrint = path.join(tmp.path, "foreign-no-fingerprint");
    await writeModules(foreignNoPrint, allModules(other), null);

    for (const [name, dir, why] of [
      ["nan", nan, /non-finite/],
      ["inf", inf, /non-finite/],
      ["foreign", foreign, /fits none of the served models/],
      ["foreign2", foreignNoPrint, /fits none of the served models/],
    ] as const) {
      const response = await api.upload(name, dir);
      expect(response.status, name).toBe(400);
      expect(response.json!.error.message, name).toMatch(why);
      expect(response.json!.error.message, name).not.toContain(tmp.path);
      expect((await api.call(`/adapters/${name}`)).status).toBe(404);
    }
    expect((await readdir(adaptersDir)).filter((f) => f.startsWith(".") && f !== ".compiled")).toEqual([]);
    expect(await api.names()).toEqual(["code", "math"]);
  });

  it("refuses merges with weight 1e308, weight 0, duplicates or 2,000 inputs (fast, 400, naming the field)", async () => {
    const huge = await api.merge({ name: "m1", adapters: [{ name: "math", weight: 1e308 }] });
    expect(huge.status).toBe(400);
    expect(huge.json!.error.param).toBe("adapters.0.weight");
    expect((await api.merge({ name: "m2", adapters: [{ name: "math", weight: 0 }] })).status).toBe(400);
    const twice = await api.merge({ name: "m3", adapters: [{ name: "math" }, { name: "math" }] });
    expect(twice.status).toBe(400);
    expect(twice.json!.error.param).toBe("adapters.1.name");
    const started = Date.now();
    const many = await api.merge({ name: "m4", adapters: Array.from({ length: 2000 }, () => ({ name: "math", weight: 0.5 })) });
    expect(many.status).toBe(400);
    expect(many.json!.error.param).toBe("adapters");
    expect(Date.now() - started).toBeLessThan(2000);
    const request = await api.complete({ adapter: [{ name: "math", weight: 1e308 }] });
    expect(request.status).toBe(400);
    expect(request.json!.error.param).toMatch(/^adapter/);
    expect(await api.names()).toEqual(["code", "math"]);
    // A valid merge still works and is listed at once.
    const ok = await api.merge({
      name: "blend",
      adapters: [
        { name: "math", weight: 0.5 },
        { name: "code", weight: -0.5 },
      ],
    });
    expect(ok.status).toBe(201);
    expect((await api.complete({ adapter: "blend" })).status).toBe(200);
    expect((await api.call("/adapters/blend", { method: "DELETE" })).status).toBe(200);
  });

  it("refuses symlinks inside adapter dirs and dirs that are symlinks out of the roots, quoting nothing", async () => {
    await mkdir(rootDir, { recursive: true });
    const evil = path.join(rootDir, "evil");
    await writeGoodAdapter(evil, base, { seed: 3 });
    await rm(path.join(evil, CONFIG_FILE));
    await symlink("/etc/passwd", path.join(evil, CONFIG_FILE));
    const registered = await api.call("/adapters", { method: "POST", body: JSON.stringify({ name: "evil", path: evil }) });
    expect(registered.status).toBe(400);
    expect(registered.json!.error.param).toBe("path");
    expect(registered.json!.error.message).toMatch(/symbolic link/);
    expect(registered.text).not.toMatch(/root:|nologin|\/bin\//);

    // The same inside the adapters dir: the poller skips it (and never reads the target).
    await cp(evil, path.join(adaptersDir, "evil2"), { recursive: true, verbatimSymlinks: true });
    expect((await lstat(path.join(adaptersDir, "evil2", CONFIG_FILE))).isSymbolicLink()).toBe(true);
    // A directory symlinked into the store from outside every root.
    const outside = path.join(tmp.path, "outside");
    await writeGoodAdapter(outside, base, { seed: 4 });
    await symlink(outside, path.join(adaptersDir, "linked"));
    await t.server.adapters.refresh();
    expect(await api.names()).toEqual(["code", "math"]);
    const linked = await api.call("/adapters", {
      method: "POST",
      body: JSON.stringify({ name: "linked2", path: path.join(adaptersDir, "linked") }),
    });
    expect(linked.status).toBe(400);
    expect(linked.json!.error.param).toBe("path");
  });

  it("keeps answering merge and delete with /dev/zero and a FIFO in the adapters dir", async () => {
    const zero = path.join(adaptersDir, "zero");
    await writeGoodAdapter(zero, base, { seed: 5 });
    await rm(path.join(zero, WEIGHTS_FILE));
    await symlink("/dev/zero", path.join(zero, WEIGHTS_FILE));
    const pipe = path.join(adaptersDir, "pipe");
    await writeGoodAdapter(pipe, base, { seed: 6 });
    await rm(path.join(pipe, WEIGHTS_FILE));
    execFileSync("mkfifo", [path.join(pipe, WEIGHTS_FILE)]);
    await new Promise((r) => setTimeout(r, 200)); // several polls
    const merged = await api.merge({ name: "after-zero", adapters: [{ name: "math", weight: 0.5 }] });
    expect(merged.status).toBe(201);
    expect(await api.names()).toContain("after-zero");
    expect((await api.call("/adapters/after-zero", { method: "DELETE" })).status).toBe(200);
    expect(await api.names()).toEqual(["code", "math"]);
  });

  it("keeps .compiled/ within --compiled-cache-mb over many weight variants, and prunes deleted adapters' files", async () => {
    const budget = 1024 * 1024;
    for (let i = 1; i <= 60; i++) {
      const response = await api.complete({
        adapter: [
          { name: "math", weight: 0.01 * i },
          { name: "code", weight: 1 },
        ],
      });
      expect(response.status).toBe(200);
    }
    // Files handed to requests in the last 250 ms are kept (one could still wait for a lane); the next
    // compile after that brings the directory within the budget.
    await new Promise((r) => setTimeout(r, 300));
    expect(
      (
        await api.complete({
          adapter: [
            { name: "math", weight: 0.777 },
            { name: "code", weight: 1 },
          ],
        })
      ).status,
    ).toBe(200);
    const files = await compiledFiles(adaptersDir);
    const total = files.reduce((n, f) => n + f.bytes, 0);
    expect(total).toBeLessThanOrEqual(budget);
    expect(t.server.compiledCache.bytes).toBe(total);
    expect(t.server.compiledCache.evictions).toBeGreaterThan(0);

    // A replaced adapter's compiled files go at once (the lane's current set is released first).
    expect((await api.complete({})).status).toBe(200);
    const mathFile = `${(await api.call("/adapters/math")).json!.hash}.gguf`;
    expect((await api.complete({ adapter: "math" })).status).toBe(200);
    expect((await api.complete({})).status).toBe(200);
    expect((await compiledFiles(adaptersDir)).some((f) => f.name.endsWith(mathFile))).toBe(true);
    expect((await api.call("/adapters/math", { method: "DELETE" })).status).toBe(200);
    expect((await api.call("/adapters/code", { method: "DELETE" })).status).toBe(200);
    // At once when free; a file just handed to a request is kept until no request can still be waiting for it.
    const deadline = Date.now() + 5000;
    while ((await compiledFiles(adaptersDir)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await compiledFiles(adaptersDir)).toEqual([]);
  }, 120_000);
});

describe("a corrupt compiled file after a restart is recompiled, not a permanent 500 (generated tiny model)", () => {
  const tmp = useTempDir("lori-store-restart-");

  it("truncate a file in .compiled/, restart: requests for that set still succeed", async () => {
    const base = await tinyBase(tmp.path);
    const adaptersDir = path.join(tmp.path, "adapters");
    await writeGoodAdapter(path.join(adaptersDir, "math"), base, { seed: 1 });
    const options = { models: [`tiny=${base.path}`], adaptersDir, adaptersPollMs: 0 };
    let t = await startTestServer(options);
    const api = client(() => t);
    try {
      expect((await api.complete({ adapter: "math" })).status).toBe(200);
    } finally {
      await t.server.close();
    }
    const [file] = await compiledFiles(adaptersDir);
    expect(file).toBeDefined();
    await truncate(path.join(adaptersDir, ".compiled", file!.name), Math.floor(file!.bytes / 2));

    t = await startTestServer(options);
    try {
      for (let i = 0; i < 2; i++) {
        const response = await api.complete({ adapter: "math" });
        expect(response.status, response.text).toBe(200);
      }
      expect((await compiledFiles(adaptersDir)).find((f) => f.name === file!.name)?.bytes).toBe(file!.bytes);
    } finally {
      await t.server.close();
    }
  }, 60_000);
});
