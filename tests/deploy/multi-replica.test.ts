import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAdapterDir } from "../../src/lora/adapter-io.js";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { repoRoot } from "./manifest-validation.js";

// Three replicas (real servers on loopback ports) share one adapter store, as the pods of
// deploy/kubernetes share one ReadWriteMany volume. Nothing tells a replica about another's writes but the
// directory itself, rescanned every POLL_MS (no inotify: network filesystems do not carry it).

const POLL_MS = 250;
/** A change is seen by every replica within one poll interval, plus this for the scan itself on two shared cores. */
const SCAN_SLACK_MS = 750;
/**
 * Room for a request that outlasts a swap: the demo model writes 240 tokens in a fraction of a second on a fast
 * machine, quicker than a delete, a merge and a poll, so the swap test asks for 1,900.
 */
const LONG_CONTEXT = 2048;
const LONG_TOKENS = 1900;

type Json = Record<string, any>;

let store: string;
let replicas: TestServer[];

beforeAll(async () => {
  store = mkdtempSync(path.join(tmpdir(), "lori-replicas-"));
  for (const name of ["math", "code", "nlu", "safety"])
    cpSync(path.join(demoAdaptersDir, name), path.join(store, name), { recursive: true });
  replicas = [];
  for (let i = 0; i < 3; i++) {
    replicas.push(
      await startTestServer({
        models: [`lori-demo=${demoModelPath}`],
        adaptersDir: store,
        adaptersPollMs: POLL_MS,
        contextSize: LONG_CONTEXT,
      }),
    );
  }
}, 180_000);

afterAll(async () => {
  await Promise.all((replicas ?? []).map((r) => r.server.close()));
  rmSync(store, { recursive: true, force: true });
});

async function call(replica: TestServer, route: string, init: RequestInit = {}): Promise<{ status: number; json: Json }> {
  const response = await fetch(`${replica.baseUrl}${route}`, {
    ...init,
    headers: { "Content-Type": "application/json", ...(init.headers ?? {}) },
  });
  const text = await response.text();
  return { status: response.status, json: text ? (JSON.parse(text) as Json) : {} };
}

const merge = (replica: TestServer, name: string, adapters: Array<{ name: string; weight?: number }>, method: "cat" | "linear" = "cat") =>
  call(replica, "/adapters/merge", { method: "POST", body: JSON.stringify({ method, name, adapters }) });

function uploadForm(name: string, from: string): FormData {
  const form = new FormData();
  form.set("name", name);
  for (const file of ["adapter_config.json", "adapter_model.safetensors"])
    form.set(file, new Blob([readFileSync(path.join(from, file))]), file);
  return form;
}

/** Waits until `check` holds on every replica; returns the milliseconds it took on the slowest. */
async function onAllWithin(check: (replica: TestServer) => Promise<boolean>, limitMs: number): Promise<number> {
  const start = Date.now();
  const pending = new Set(replicas);
  while (pending.size > 0) {
    for (const replica of [...pending]) if (await check(replica)) pending.delete(replica);
    if (pending.size === 0) break;
    if (Date.now() - start > limitMs * 4) throw new Error(`not on all replicas after ${Date.now() - start} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - start;
}

const hashOn = async (replica: TestServer, name: string) => {
  const response = await call(replica, `/adapters/${name}`);
  return response.status === 200 ? (response.json.hash as string) : null;
};

describe("three replicas, one adapter store", () => {
  const limit = POLL_MS + SCAN_SLACK_MS;

  it("an upload through one replica is served by all within the poll interval", async () => {
    const response = await fetch(`${replicas[0]!.baseUrl}/adapters`, {
      method: "POST",
      body: uploadForm("uploaded", path.join(demoAdaptersDir, "nlu")),
    });
    expect(response.status).toBe(201);
    const { hash } = (await response.json()) as Json;
    expect(await onAllWithin(async (r) => (await hashOn(r, "uploaded")) === hash, limit)).toBeLessThanOrEqual(limit);
    const completion = await call(replicas[2]!, "/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: "uploaded", prompt: "1+1=", max_tokens: 4 }),
    });
    expect(completion.status).toBe(200);
  });

  it("a merge, a replacement and a delete through different replicas reach all within the poll interval", async () => {
    const merged = await merge(replicas[1]!, "mixed", [{ name: "math" }, { name: "code" }]);
    expect(merged.status).toBe(201);
    expect(await onAllWithin(async (r) => (await hashOn(r, "mixed")) === merged.json.hash, limit)).toBeLessThanOrEqual(limit);

    // Replace: delete through one replica and, once every replica has seen that, merge anew under the same name
    // through another.
    expect((await call(replicas[2]!, "/adapters/mixed", { method: "DELETE" })).status).toBe(200);
    expect(await onAllWithin(async (r) => (await hashOn(r, "mixed")) === null, limit)).toBeLessThanOrEqual(limit);
    const replaced = await merge(
      replicas[0]!,
      "mixed",
      [
        { name: "math", weight: 0.5 },
        { name: "safety", weight: 0.5 },
      ],
      "linear",
    );
    expect(replaced.status).toBe(201);
    expect(replaced.json.hash).not.toBe(merged.json.hash);
    expect(await onAllWithin(async (r) => (await hashOn(r, "mixed")) === replaced.json.hash, limit)).toBeLessThanOrEqual(limit);

    expect((await call(replicas[1]!, "/adapters/mixed", { method: "DELETE" })).status).toBe(200);
    expect(await onAllWithin(async (r) => (await hashOn(r, "mixed")) === null, limit)).toBeLessThanOrEqual(limit);
  });

  it("a request running on one replica finishes on the version it started with while another replaces the adapter", async () => {
    const body = (prompt: string) =>
      JSON.stringify({ model: "swap", prompt, max_tokens: LONG_TOKENS, ignore_eos: true, temperature: 0, stream: true });
    const readStream = async (response: Response, onFirst?: () => Promise<void>) => {
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      let first = true;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        if (first && onFirst) {
          first = false;
          await onFirst();
        }
      }
      return text
        .split("\n")
        .filter((l) => l.startsWith("data: {"))
        .map((l) => (JSON.parse(l.slice(6)) as Json).choices[0].text as string)
        .join("");
    };
    expect((await merge(replicas[0]!, "swap", [{ name: "math" }])).status).toBe(201);
    await onAllWithin(async (r) => (await hashOn(r, "swap")) !== null, limit);
    const before = await readStream(
      await fetch(`${replicas[1]!.baseUrl}/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body("Once"),
      }),
    );

    let replacedHash = "";
    let busyWhenSwapped = 0;
    const during = await readStream(
      await fetch(`${replicas[1]!.baseUrl}/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body("Once"),
      }),
      async () => {
        expect((await call(replicas[2]!, "/adapters/swap", { method: "DELETE" })).status).toBe(200);
        const replaced = await merge(replicas[2]!, "swap", [{ name: "code" }]);
        expect(replaced.status).toBe(201);
        replacedHash = replaced.json.hash;
        await onAllWithin(async (r) => (await hashOn(r, "swap")) === replacedHash, limit);
        // The replica serving the request has seen the new version while the request is still generating.
        busyWhenSwapped = replicas[1]!.server.inFlight();
      },
    );
    expect(busyWhenSwapped).toBe(1);
    expect(during).toBe(before);
    const after = await readStream(
      await fetch(`${replicas[1]!.baseUrl}/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body("Once"),
      }),
    );
    expect(after).not.toBe(before);
  });

  it("two replicas merging to one name at the same moment: one 201, one 409, one intact adapter (20 races)", async () => {
    const outcomes: string[] = [];
    for (let race = 0; race < 20; race++) {
      const name = `race-${race}`;
      const [a, b] = await Promise.all([
        merge(replicas[race % 3]!, name, [{ name: "math" }, { name: "nlu" }]),
        merge(replicas[(race + 1) % 3]!, name, [{ name: "code" }, { name: "safety" }]),
      ]);
      outcomes.push(`${a.status}/${b.status}`);
      expect([a.status, b.status].sort()).toEqual([201, 409]);
      const winner = a.status === 201 ? a : b;
      const loser = a.status === 201 ? b : a;
      expect(loser.json.error.code).toMatch(/exists|conflict/);
      // The adapter on disk is the winner's, complete, and every replica serves that one.
      await readAdapterDir(path.join(store, name));
      await onAllWithin(async (r) => (await hashOn(r, name)) === winner.json.hash, limit);
    }
    console.log(`[replicas] merge races: ${outcomes.join(" ")}`);
  });

  it("two replicas uploading one name at the same moment: one 201, one 409, one intact adapter (10 races)", async () => {
    const outcomes: string[] = [];
    for (let race = 0; race < 10; race++) {
      const name = `upload-race-${race}`;
      const post = (replica: TestServer, from: string) =>
        fetch(`${replica.baseUrl}/adapters`, { method: "POST", body: uploadForm(name, path.join(demoAdaptersDir, from)) });
      const [a, b] = await Promise.all([post(replicas[race % 3]!, "math"), post(replicas[(race + 2) % 3]!, "code")]);
      outcomes.push(`${a.status}/${b.status}`);
      expect([a.status, b.status].sort()).toEqual([201, 409]);
      const winner = (await (a.status === 201 ? a : b).json()) as Json;
      await readAdapterDir(path.join(store, name));
      await onAllWithin(async (r) => (await hashOn(r, name)) === winner.hash, limit);
    }
    console.log(`[replicas] upload races: ${outcomes.join(" ")}`);
    expect(readdirSync(store).filter((n) => n.startsWith("."))).toEqual(expect.not.arrayContaining([expect.stringMatching(/\.tmp$/)]));
  });
});

describe("a replica killed with -9 mid-merge or mid-upload", () => {
  /** A replica in its own process (the CLI through tsx), so it can be killed with SIGKILL. */
  function spawnReplica(port: number): ChildProcess {
    const args = [
      "serve",
      "--model",
      `lori-demo=${demoModelPath}`,
      "--adapters-dir",
      store,
      "--port",
      String(port),
      "--gpu",
      "off",
      "--threads",
      "1",
    ];
    args.push("--context-size", "256", "--adapters-poll-ms", "0", "--quiet");
    return spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "src/cli/main.ts"), ...args], {
      stdio: "ignore",
      cwd: repoRoot,
    });
  }

  async function startReplicaProcess(): Promise<{ child: ChildProcess; url: string }> {
    const port = 41000 + Math.floor(Math.random() * 2000);
    const child = spawnReplica(port);
    const url = `http://127.0.0.1:${port}`;
    for (let waited = 0; waited < 60_000; waited += 100) {
      if (
        await fetch(`${url}/ready`).then(
          (r) => r.status === 200,
          () => false,
        )
      )
        return { child, url };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    child.kill("SIGKILL");
    throw new Error("the spawned replica did not start");
  }

  it("leaves nothing half-written that another replica would load (8 kills: 4 merges, 4 uploads)", async () => {
    const hits: string[] = [];
    for (let kill = 0; kill < 8; kill++) {
      const { child, url } = await startReplicaProcess();
      const kind = kill % 2 === 0 ? "merge" : "upload";
      const name = `killed-${kill}`;
      const before = new Set(readdirSync(store));
      const request =
        kind === "merge"
          ? fetch(`${url}/adapters/merge`, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ method: "cat", name, adapters: ["math", "code", "nlu", "safety"].map((n) => ({ name: n })) }),
            })
          : fetch(`${url}/adapters`, { method: "POST", body: uploadForm(name, path.join(demoAdaptersDir, "safety")) });
      void request.catch(() => undefined);
      // Kill the moment the replica's temporary directory appears, i.e. while it writes (or, if it is quick, just after).
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && !readdirSync(store).some((n) => !before.has(n)))
        await new Promise((resolve) => setImmediate(resolve));
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
      const left = readdirSync(store).filter((n) => !before.has(n));
      hits.push(`${kind}:${left.length === 0 ? "nothing" : left.map((n) => (n.startsWith(".") ? "temp" : "complete")).join("+")}`);
      // Whatever the kill left, after a poll every replica lists only adapters that load completely, and a
      // temporary directory is never listed.
      await new Promise((resolve) => setTimeout(resolve, POLL_MS + SCAN_SLACK_MS));
      for (const replica of replicas) {
        const listed = ((await call(replica, "/adapters")).json.data as Array<{ id: string }>).map((a) => a.id);
        for (const id of listed) {
          expect(id.startsWith(".")).toBe(false);
          await readAdapterDir(path.join(store, id));
        }
      }
      for (const n of readdirSync(store).filter((n) => !n.startsWith("."))) await readAdapterDir(path.join(store, n));
    }
    console.log(`[replicas] kill -9 outcomes (what the killed write left in the store): ${hits.join(" ")}`);
    expect(hits.some((h) => h.includes("temp"))).toBe(true);
  }, 400_000);
});
