import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";

/**
 * Runs untrusted JavaScript (a model's answer to a code task) against hidden tests in a separate Node process:
 *
 * - Node's permission model (`--experimental-permission` on Node 20, `--permission` from 22.13) with nothing
 *   granted: no filesystem reads or writes at all (the harness is passed with `-e`, the input on stdin), no child
 *   processes, no worker threads, no native addons, no inspector; `process.binding` is denied.
 * - Network: Node's permission model restricts it only where Node has `--allow-net` (Node 25+). Below that the
 *   harness removes it in JavaScript before the code runs (net/dgram/dns/http entry points patched, `fetch` and
 *   `WebSocket` removed): a strong barrier against ordinary code, not a guarantee against a determined exploit of V8.
 * - The code runs in a fresh `vm` context with no `require`, `process` or timers; the main realm's `process`,
 *   `require`, `module` and `fetch` are deleted first, so the usual `constructor.constructor` escape finds nothing.
 * - An empty environment (no NODE_OPTIONS), a 64 MiB heap, output capped at 64 KiB, and a hard SIGKILL at the
 *   timeout (default 2 s) of the whole process, whatever the code does.
 * - The verdict is one line tagged with a random nonce and written with a `writeSync` captured before the code
 *   runs; anything else on stdout is ignored.
 */

export type JsonValue = null | boolean | number | string | JsonValue[];

export interface HiddenTest {
  readonly args: readonly JsonValue[];
  readonly expected: JsonValue;
}

export interface SandboxOptions {
  /** Hard limit for the whole child process, in ms (default 2000). */
  readonly timeoutMs?: number;
  /** V8 heap limit of the child, in MiB (default 64). */
  readonly maxHeapMb?: number;
  /**
   * Tests only: also give the code `require`, to check that the permission model itself (not merely the missing
   * `require`) denies filesystem, child process and worker access.
   */
  readonly exposeRequireForTests?: boolean;
}

export interface SandboxResult {
  /** `passed`: every test gave the expected value. */
  readonly status: "passed" | "failed" | "error" | "timeout";
  readonly passed: number;
  readonly total: number;
  /** One line: the first error or mismatch, when not passed. */
  readonly detail?: string;
  /** Tests only: the value each test returned, canonicalised (as the harness compares them). */
  readonly outputs?: readonly string[];
}

const OUTPUT_CAP = 64 * 1024;

/** The flag that turns on Node's permission model in this Node version. */
export function permissionFlag(version = process.versions.node): "--permission" | "--experimental-permission" {
  if (process.allowedNodeEnvironmentFlags.has("--permission")) return "--permission";
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 22 || (major === 22 && minor >= 13) ? "--permission" : "--experimental-permission";
}

/** Whether this Node's permission model also denies network access (`--allow-net` exists, Node 25+). */
export function permissionModelDeniesNetwork(): boolean {
  return process.allowedNodeEnvironmentFlags.has("--allow-net");
}

/** Runs `code`, then calls the global function `functionName` with each test's arguments. Never throws for bad code. */
export function runInSandbox(
  code: string,
  functionName: string,
  tests: readonly HiddenTest[],
  options: SandboxOptions = {},
): Promise<SandboxResult> {
  if (!/^[A-Za-z_$][\w$]*$/.test(functionName)) throw new TypeError(`not a function name: '${functionName}'`);
  const timeoutMs = options.timeoutMs ?? 2000;
  const nonce = randomBytes(16).toString("hex");
  const input = JSON.stringify({ code, functionName, tests, nonce, exposeRequire: options.exposeRequireForTests === true, timeoutMs });
  const child = spawn(
    process.execPath,
    [permissionFlag(), "--no-warnings", `--max-old-space-size=${options.maxHeapMb ?? 64}`, "-e", HARNESS],
    { cwd: tmpdir(), env: {}, stdio: ["pipe", "pipe", "pipe"], windowsHide: true },
  );
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const collect = (append: (s: string) => void) => (chunk: Buffer) => append(chunk.toString("utf8"));
    child.stdout.on(
      "data",
      collect((s) => (stdout = (stdout + s).slice(0, OUTPUT_CAP))),
    );
    child.stderr.on(
      "data",
      collect((s) => (stderr = (stderr + s).slice(0, OUTPUT_CAP))),
    );
    child.stdin.on("error", () => {}); // the child may exit before reading all of its input
    child.stdin.end(input);
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve({ status: "error", passed: 0, total: tests.length, detail: `could not start node: ${error.message}` });
    });
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        resolve({ status: "timeout", passed: 0, total: tests.length, detail: `killed after ${timeoutMs} ms` });
        return;
      }
      const line = stdout.split("\n").find((l) => l.startsWith(`${nonce} `));
      if (!line || exitCode !== 0) {
        const why = stderr.trim().split("\n").at(-1) ?? "";
        resolve({ status: "error", passed: 0, total: tests.length, detail: `exited with ${signal ?? exitCode}${why ? `: ${why}` : ""}` });
        return;
      }
      const verdict = JSON.parse(line.slice(nonce.length + 1)) as {
        passed: number;
        detail?: string;
        fatal: boolean;
        timedOut: boolean;
        outputs: string[];
      };
      const status = verdict.timedOut ? "timeout" : verdict.fatal ? "error" : verdict.passed === tests.length ? "passed" : "failed";
      resolve({
        status,
        passed: verdict.passed,
        total: tests.length,
        ...(verdict.detail ? { detail: verdict.detail } : {}),
        outputs: verdict.outputs,
      });
    });
  });
}

/** The child's program (CommonJS, run with `node -e`); reads {code, functionName, tests, nonce} on stdin. */
const HARNESS = String.raw`"use strict";
const fs = require("fs");
const vm = require("vm");
const writeSync = fs.writeSync;
const stringify = JSON.stringify;
const isArray = Array.isArray;
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const deny = (what) => function denied() {
  const error = new Error("sandbox: " + what + " is not allowed");
  error.code = "ERR_ACCESS_DENIED";
  throw error;
};
function denyAll(object, what, keep) {
  if (!object) return;
  for (const key of Object.getOwnPropertyNames(object)) {
    if (keep && keep.includes(key)) continue;
    const d = Object.getOwnPropertyDescriptor(object, key);
    if (d && typeof d.value === "function" && d.writable !== false) object[key] = deny(what);
  }
}
const net = require("net");
net.Socket.prototype.connect = deny("network");
net.Server.prototype.listen = deny("network");
net.connect = net.createConnection = net.createServer = deny("network");
const dgram = require("dgram");
dgram.createSocket = deny("network");
denyAll(dgram.Socket.prototype, "network", ["constructor"]);
const dns = require("dns");
denyAll(dns, "network", ["Resolver"]);
denyAll(dns.promises, "network", ["Resolver"]);
denyAll(dns.Resolver.prototype, "network", ["constructor"]);
denyAll(dns.promises.Resolver.prototype, "network", ["constructor"]);
for (const mod of ["http", "https", "http2", "tls"]) {
  const m = require(mod);
  for (const fn of ["request", "get", "connect", "createServer", "createSecureServer"]) if (typeof m[fn] === "function") m[fn] = deny("network");
}
const proc = process;
for (const key of ["kill", "_kill", "getBuiltinModule", "binding", "_linkedBinding", "dlopen", "chdir", "setuid", "setgid"]) {
  try { proc[key] = deny("process." + key); } catch {}
}
const exposed = input.exposeRequire ? require : undefined;
for (const name of ["process", "require", "module", "exports", "__filename", "__dirname", "fetch", "WebSocket", "EventSource", "Request", "Response", "Headers", "FormData", "navigator"]) {
  try { delete globalThis[name]; } catch {}
}
function canon(value, depth) {
  if (value === null) return "null";
  const type = typeof value;
  if (type === "number") return Object.is(value, -0) ? "0" : String(value);
  if (type === "string") return stringify(value);
  if (type === "boolean" || type === "undefined") return String(value);
  if (isArray(value) && depth < 4) {
    const parts = [];
    for (let i = 0; i < value.length && i < 1000; i++) parts.push(canon(value[i], depth + 1));
    return "[" + parts.join(",") + "]";
  }
  return "<" + type + ">";
}
const oneLine = (error) => String(error && error.message !== undefined ? (error.name || "Error") + ": " + error.message : error).split("\n")[0].slice(0, 200);
let passed = 0;
let detail;
let fatal = false;
let timedOut = false;
const note = (error) => {
  if (error && error.code === "ERR_SCRIPT_EXECUTION_TIMEOUT") timedOut = true;
  if (detail === undefined) detail = oneLine(error);
};
const outputs = [];
const options = { timeout: Math.max(1, input.timeoutMs) };
try {
  const context = vm.createContext(exposed ? { require: exposed } : {});
  vm.runInContext(input.code, context, options);
  if (vm.runInContext("typeof " + input.functionName, context, options) !== "function") {
    fatal = true;
    detail = "no function named " + input.functionName;
  } else {
    for (const test of input.tests) {
      let got;
      try {
        got = canon(vm.runInContext(input.functionName + "(..." + stringify(test.args) + ")", context, options), 0);
      } catch (error) {
        got = "<threw>";
        note(error);
      }
      outputs.push(got);
      if (got === canon(test.expected, 0)) passed++;
      else if (detail === undefined) detail = input.functionName + "(" + stringify(test.args).slice(1, -1) + ") gave " + got + ", expected " + canon(test.expected, 0);
    }
  }
} catch (error) {
  fatal = true;
  note(error);
}
writeSync(1, input.nonce + " " + stringify({ passed, detail, fatal, timedOut, outputs }) + "\n");
`;
