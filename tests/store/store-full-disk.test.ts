import { readdir } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CONFIG_FILE, WEIGHTS_FILE } from "../../src/lora/adapter-io.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { useTempDir } from "../support/temp-dir.js";
import { tinyBase, writeGoodAdapter } from "./store-fixtures.js";

/**
 * Issue 10, defect 1: "On a full disk, merge and upload answer a bare 500." A tmpfs small enough to fill is
 * not available to tests, so this one file injects ENOSPC at the write of adapter_model.safetensors (the
 * large write, after the config was written): everything else is the real server on a generated model.
 */
const disk = vi.hoisted(() => ({ full: false }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" });
  const isWeights = (file: unknown) => typeof file === "string" && path.basename(file).includes(WEIGHTS_FILE);
  const writeFile: typeof actual.writeFile = async (file, data, options) => {
    if (disk.full && isWeights(file)) throw enospc();
    return actual.writeFile(file, data, options);
  };
  const open = (async (
    file: Parameters<typeof actual.open>[0],
    flags?: Parameters<typeof actual.open>[1],
    mode?: Parameters<typeof actual.open>[2],
  ) => {
    const handle = await actual.open(file, flags, mode);
    if (!disk.full || !isWeights(file)) return handle;
    // The first write of the weights fails after the file was created: a partial file exists until cleanup.
    return new Proxy(handle, {
      get(target, key, receiver) {
        if (key === "write") return async () => Promise.reject(enospc());
        const value = Reflect.get(target, key, receiver) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as FileHandle;
  }) as typeof actual.open;
  return { ...actual, default: { ...actual, writeFile, open }, writeFile, open };
});

describe("a full disk during merge or upload: 507, nothing left behind, registry unchanged", () => {
  const tmp = useTempDir("lori-store-enospc-");
  let t: TestServer;
  let adaptersDir: string;
  let goodDir: string;

  beforeAll(async () => {
    const base = await tinyBase(tmp.path);
    adaptersDir = path.join(tmp.path, "adapters");
    await writeGoodAdapter(path.join(adaptersDir, "math"), base, { seed: 1 });
    goodDir = path.join(tmp.path, "upload-source");
    await writeGoodAdapter(goodDir, base, { seed: 2 });
    t = await startTestServer({ models: [`tiny=${base.path}`], adaptersDir, adaptersPollMs: 0 });
  }, 60_000);
  afterAll(async () => {
    disk.full = false;
    await t?.server.close();
  });

  const call = async (route: string, init: RequestInit) => {
    const response = await fetch(`${t.baseUrl}${route}`, init);
    return { status: response.status, json: (await response.json()) as { error?: { code: string; message: string } } };
  };
  const leftovers = async () => (await readdir(adaptersDir)).filter((f) => f !== "math" && f !== ".compiled").sort();
  const listed = async () => t.server.adapters.list().map((e) => e.name);

  it("merge", async () => {
    disk.full = true;
    const response = await call("/adapters/merge", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ method: "cat", name: "merged", adapters: [{ name: "math", weight: 0.5 }] }),
    });
    disk.full = false;
    expect(response.status).toBe(507);
    expect(response.json.error?.code).toBe("storage_full");
    expect(await leftovers()).toEqual([]);
    expect(await listed()).toEqual(["math"]);
  });

  it("upload", async () => {
    const { readFile } = await import("node:fs/promises");
    const form = new FormData();
    form.set("name", "uploaded");
    form.set(CONFIG_FILE, new Blob([await readFile(path.join(goodDir, CONFIG_FILE))]), CONFIG_FILE);
    form.set(WEIGHTS_FILE, new Blob([await readFile(path.join(goodDir, WEIGHTS_FILE))]), WEIGHTS_FILE);
    disk.full = true;
    const response = await call("/adapters", { method: "POST", body: form });
    disk.full = false;
    expect(response.status).toBe(507);
    expect(response.json.error?.code).toBe("storage_full");
    expect(await leftovers()).toEqual([]);
    expect(await listed()).toEqual(["math"]);
    await t.server.adapters.refresh();
    expect(await listed()).toEqual(["math"]);
  });
});
