import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoAdaptersDir, demoModelPath } from "../support/in-process.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { type K8sObject, renderKustomization } from "./kustomize-render.js";
import { repoRoot } from "./manifest-validation.js";

// The two scripts the Deployment runs inside its pods, run here as written in the rendered manifest (only the
// in-pod paths and the port are replaced): the init container that seeds the shared adapter store, and the
// readiness probe that asks /ready with a key from the mounted keys file.

type Any = Record<string, any>;
const podSpec = (
  renderKustomization(path.join(repoRoot, "deploy/kubernetes/overlays/cpu")).find(
    (o: K8sObject) => o.kind === "Deployment" && o.metadata.name === "lori-server",
  ) as Any
).spec.template.spec;

function run(command: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => `${path.relative(dir, path.join(d.parentPath, d.name))}:${readFileSync(path.join(d.parentPath, d.name)).length}`)
    .sort();
}

describe("the seed-adapters init container", () => {
  const script = (podSpec.initContainers as Any[]).find((c) => c.name === "seed-adapters")!.command[2] as string;
  const work = mkdtempSync(path.join(tmpdir(), "lori-seed-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("three pods seeding an empty store at once leave the demo adapters, complete, and no temporary copies", async () => {
    const store = path.join(work, "store");
    mkdirSync(store);
    const local = script.replaceAll("/app/adapters", demoAdaptersDir).replaceAll("/var/lib/lori/adapters", store);
    const results = await Promise.all(["pod-a", "pod-b", "pod-c"].map((host) => run("sh", ["-c", local], { HOSTNAME: host })));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(readdirSync(store).sort()).toEqual(["code", "math", "nlu", "safety"]);
    // The image holds only the four adapters and a README; a local .compiled cache is not seeded (the glob skips dot-dirs).
    expect(tree(store)).toEqual(tree(demoAdaptersDir).filter((f) => !f.startsWith("README") && !f.startsWith(".")));
  });

  it("never overwrites an adapter already in the store", async () => {
    const store = path.join(work, "store2");
    mkdirSync(path.join(store, "math"), { recursive: true });
    writeFileSync(path.join(store, "math", "adapter_config.json"), "{}");
    const local = script.replaceAll("/app/adapters", demoAdaptersDir).replaceAll("/var/lib/lori/adapters", store);
    expect((await run("sh", ["-c", local], { HOSTNAME: "pod-a" })).code).toBe(0);
    expect(readFileSync(path.join(store, "math", "adapter_config.json"), "utf8")).toBe("{}");
    expect(readdirSync(store).sort()).toEqual(["code", "math", "nlu", "safety"]);
  });
});

describe("the readiness probe", () => {
  const container = (podSpec.containers as Any[]).find((c) => c.name === "lori-server")!;
  const [command, ...args] = container.readinessProbe.exec.command as string[];
  const work = mkdtempSync(path.join(tmpdir(), "lori-probe-"));
  const keysFile = path.join(work, "keys.json");
  const wrongKeysFile = path.join(work, "wrong.json");
  let harness: TestServer;

  beforeAll(async () => {
    writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [
          { key: "probe-key-123456", role: "user" },
          { key: "admin-key-123456", role: "admin" },
        ],
      }),
    );
    writeFileSync(wrongKeysFile, JSON.stringify({ keys: [{ key: "not-a-key-123456", role: "user" }] }));
    const adaptersDir = path.join(work, "adapters");
    cpSync(path.join(demoAdaptersDir, "math"), path.join(adaptersDir, "math"), { recursive: true });
    harness = await startTestServer({ models: [`lori-demo=${demoModelPath}`], adaptersDir, keysFile, adaptersPollMs: 0 });
  }, 120_000);

  afterAll(async () => {
    await harness?.server.close();
    rmSync(work, { recursive: true, force: true });
  });

  const probe = (file: string) =>
    run(
      command!,
      args.map((a) => a.replaceAll("/etc/lori/keys.json", file).replaceAll("http://127.0.0.1:8080", harness.baseUrl)),
    );

  it("passes on a ready server with the mounted keys file", async () => {
    expect((await fetch(`${harness.baseUrl}/ready`)).status).toBe(401);
    expect(await probe(keysFile)).toMatchObject({ code: 0 });
  });

  it("fails with a key the server does not know, and once the server drains", async () => {
    expect((await probe(wrongKeysFile)).code).toBe(1);
    harness.server.lifecycle.draining = true;
    try {
      expect((await probe(keysFile)).code).toBe(1);
    } finally {
      harness.server.lifecycle.draining = false;
    }
  });
});
