import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveServeConfig } from "../../src/config/serve-config.js";
import { type ServerCore, startServer } from "../../src/server/start-server.js";
import { createInProcessServer, demoModelPath, postJson } from "../support/in-process.js";

describe("statuses follow the error table", () => {
  let core: ServerCore;

  beforeAll(async () => {
    core = await createInProcessServer({}, { withDemoAdapters: false });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("answers a malformed multipart body with 400, not 500", async () => {
    const response = await core.app.request("/adapters", {
      method: "POST",
      headers: { "Content-Type": "multipart/form-data; boundary=XYZ" },
      body: '--XYZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nbroken-without-end',
    });
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { type: string; message: string } };
    expect(json.error.type).toBe("invalid_request_error");
  });

  it("never puts a server path in a message", async () => {
    const dir = join(core.adapters.dir, "garbage");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "adapter_config.json"), "{ not json");
    writeFileSync(join(dir, "adapter_model.safetensors"), "nothing");
    const r = await postJson(core, "/adapters", { name: "garbage2", path: dir });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.text).not.toContain(core.adapters.dir);
    expect(r.text).not.toMatch(/\/tmp\//);
  });
});

describe("a failed start", () => {
  it("frees the models and the adapter poller when the port is taken", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const config = resolveServeConfig(
      {
        models: [`lori-demo=${demoModelPath}`],
        host: "127.0.0.1",
        port,
        gpu: "off",
        threads: 1,
        contextSize: 128,
        logRequests: false,
        adaptersPollMs: 50,
      },
      {},
    );
    await expect(startServer(config)).rejects.toThrow(/EADDRINUSE|in use/);
    await new Promise((resolve) => setTimeout(resolve, 120));
    const timersAfter = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    expect(timersAfter).toBeLessThanOrEqual(timersBefore);
    blocker.close();
  });
});
