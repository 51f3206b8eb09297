import { connect } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveServeConfig } from "../../src/config/serve-config.js";
import { startServer, type RunningServer } from "../../src/server/start-server.js";
import { demoModelPath } from "../support/in-process.js";

/** Sends `chunks` slowly on a raw socket; resolves with what the server answered and when it hung up. */
function trickle(port: number, chunks: string[], everyMs: number): Promise<{ response: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(port, "127.0.0.1");
    let response = "";
    let index = 0;
    const timer = setInterval(() => {
      if (index < chunks.length && !socket.destroyed) socket.write(chunks[index++]!);
    }, everyMs);
    socket.on("data", (data) => (response += data.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearInterval(timer);
      resolve({ response, closedAfterMs: performance.now() - started });
    });
    setTimeout(() => {
      clearInterval(timer);
      socket.destroy();
      reject(new Error("the server kept the trickling connection open for 10 s"));
    }, 10_000).unref();
  });
}

describe("slow clients cannot hold connections", () => {
  let server: RunningServer;

  beforeAll(async () => {
    const config = resolveServeConfig(
      {
        models: [`lori-demo=${demoModelPath}`],
        host: "127.0.0.1",
        port: 0,
        gpu: "off",
        threads: 1,
        contextSize: 128,
        logRequests: false,
        adaptersDir: mkdtempSync(join(tmpdir(), "lori-slow-")),
        headerTimeoutMs: 500,
        bodyTimeoutMs: 1000,
      },
      {},
    );
    server = await startServer(config);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("answers 408 and hangs up on a client that trickles its headers", async () => {
    const header = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".split("");
    const { response, closedAfterMs } = await trickle(server.port, header, 100);
    expect(response).toMatch(/^HTTP\/1\.1 408/);
    expect(closedAfterMs).toBeLessThan(3000);
  });

  it("answers 408 and hangs up on a client that trickles its body", async () => {
    const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 1 });
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const { response, closedAfterMs } = await trickle(server.port, [head, ...body.split("")], 150);
    expect(response).toMatch(/^HTTP\/1\.1 408/);
    expect(closedAfterMs).toBeLessThan(4000);
  });

  it("still serves a client that sends at a normal pace", async () => {
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Once", max_tokens: 2 }),
    });
    expect(r.status).toBe(200);
  });
});
