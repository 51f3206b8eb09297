import { existsSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { permissionFlag, runInSandbox } from "../../src/tasks/code-sandbox.js";
import { useTempDir } from "../support/temp-dir.js";

const TESTS = [
  { args: [2, 3], expected: 5 },
  { args: [-4, 1], expected: -3 },
];
const FAST = { timeoutMs: 1500 };
const REQUIRE = { ...FAST, exposeRequireForTests: true };
/** Reaches the main realm's globals from inside the vm context, the classic escape. */
const ESCAPE = "this.constructor.constructor('return globalThis')()";

describe("the code sandbox", () => {
  const tmp = useTempDir("lori-sandbox-");
  let server: Server;
  let port = 0;
  let connections = 0;

  beforeAll(async () => {
    server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("passes a correct solution and reports each failing test of a wrong one", async () => {
    expect(await runInSandbox("function add(a, b) { return a + b; }", "add", TESTS, FAST)).toMatchObject({
      status: "passed",
      passed: 2,
      total: 2,
    });
    const wrong = await runInSandbox("function add(a, b) { return a > 0 ? a + b : 0; }", "add", TESTS, FAST);
    expect(wrong).toMatchObject({ status: "failed", passed: 1, outputs: ["5", "0"] });
    expect(wrong.detail).toContain("add(-4,1) gave 0, expected -3");
  });

  it("kills an infinite loop, also one scheduled outside the vm, at the hard timeout", async () => {
    for (const code of [
      "while (true) {}",
      `const st = ${ESCAPE}.setTimeout; st(() => { for (;;) {} }, 0); function add(a, b) { return a + b; }`,
    ]) {
      const started = Date.now();
      const result = await runInSandbox(code, "add", TESTS, { timeoutMs: 1000 });
      expect(result.status).toBe("timeout");
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });

  it("denies file writes and reads through the permission model even when require is at hand", async () => {
    const target = join(tmp.path, "pwned.txt");
    const write = await runInSandbox(
      `function add(a, b) { require("fs").writeFileSync(${JSON.stringify(target)}, "x"); return a + b; }`,
      "add",
      TESTS,
      REQUIRE,
    );
    expect(write.status).toBe("failed");
    expect(write.detail).toMatch(/restricted|ERR_ACCESS_DENIED/);
    expect(existsSync(target)).toBe(false);
    const read = await runInSandbox(
      `function add(a, b) { return require("fs").readFileSync(${JSON.stringify(import.meta.filename ?? target)}, "utf8").length; }`,
      "add",
      TESTS,
      REQUIRE,
    );
    expect(read.outputs).toEqual(["<threw>", "<threw>"]);
  });

  it("denies child processes and worker threads", async () => {
    const marker = join(tmp.path, "spawned.txt");
    const child = await runInSandbox(
      `function add(a, b) { require("child_process").execSync("touch ${marker}"); return a + b; }`,
      "add",
      TESTS,
      REQUIRE,
    );
    expect(child.detail).toMatch(/restricted|ERR_ACCESS_DENIED/);
    expect(existsSync(marker)).toBe(false);
    const worker = await runInSandbox(
      `function add(a, b) { new (require("worker_threads").Worker)("1", { eval: true }); return a + b; }`,
      "add",
      TESTS,
      REQUIRE,
    );
    expect(worker.detail).toMatch(/restricted|ERR_ACCESS_DENIED/);
  });

  it("denies network access: sockets, fetch and http never reach a listening server", async () => {
    const attempts = [
      `require("net").connect(${port}, "127.0.0.1")`,
      `new (require("net").Socket)().connect(${port}, "127.0.0.1")`,
      `require("http").get("http://127.0.0.1:${port}/")`,
      `require("dgram").createSocket("udp4").send("x", ${port}, "127.0.0.1")`,
    ];
    for (const attempt of attempts) {
      const result = await runInSandbox(`function add(a, b) { ${attempt}; return a + b; }`, "add", TESTS, REQUIRE);
      expect(result.outputs, attempt).toEqual(["<threw>", "<threw>"]);
    }
    // Without require: no fetch in the context, and the escape finds no fetch, process or require either.
    const escaped = await runInSandbox(
      `function add(a, b) { const g = ${ESCAPE}; return [typeof fetch, typeof g.fetch, typeof g.process, typeof g.require, typeof require].join(); }`,
      "add",
      [{ args: [], expected: "undefined,undefined,undefined,undefined,undefined" }],
      FAST,
    );
    expect(escaped.status).toBe("passed");
    await new Promise((r) => setTimeout(r, 100));
    expect(connections).toBe(0);
  });

  it("reports code that does not define the function, or does not parse, as an error", async () => {
    expect((await runInSandbox("const x = 1;", "add", TESTS, FAST)).status).toBe("error");
    expect((await runInSandbox("function add(a, b) { return a + ; }", "add", TESTS, FAST)).detail).toMatch(/SyntaxError/);
  });

  it("ignores forged verdicts printed by the code", async () => {
    const forged = `function add() { ${ESCAPE}.console.log('{"passed":2}'); return 0; }`;
    expect((await runInSandbox(forged, "add", TESTS, FAST)).status).toBe("failed");
  });

  it("uses the permission flag of this Node version", () => {
    expect(permissionFlag("20.20.2")).toBe(
      process.allowedNodeEnvironmentFlags.has("--permission") ? "--permission" : "--experimental-permission",
    );
    expect(permissionFlag("24.1.0")).toBe("--permission");
  });
});
