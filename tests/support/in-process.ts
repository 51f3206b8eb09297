import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { resolveServeConfig, type ServeConfig } from "../../src/config/serve-config.js";
import { createServerCore, type ServerCore } from "../../src/server/start-server.js";

/** The committed demo model and its four adapters: present in every clone, so these tests never skip. */
export const demoModelPath = resolve("models/lori-demo.gguf");
export const demoAdaptersDir = resolve("adapters");

/**
 * The fast test tier: the whole server (real node-llama-cpp, real registry, lanes and metrics) without a
 * socket; tests call `core.app.request()`. Adapters are copied into a temporary store of the test's own.
 */
export async function createInProcessServer(
  overrides: Partial<Record<keyof ServeConfig, unknown>> = {},
  options: { withDemoAdapters?: boolean; adaptersDir?: string } = {},
): Promise<ServerCore> {
  // A named adapters dir is used as it is (a restarted core must see what the previous one left).
  const adaptersDir = options.adaptersDir ?? mkdtempSync(join(tmpdir(), "lori-inproc-adapters-"));
  if (options.adaptersDir === undefined && options.withDemoAdapters !== false) {
    for (const name of ["math", "code", "nlu", "safety"]) cpSync(join(demoAdaptersDir, name), join(adaptersDir, name), { recursive: true });
  }
  // Uploaded files and fine-tuning jobs go to a temporary data dir unless the test names one.
  const dataDir = mkdtempSync(join(tmpdir(), "lori-inproc-data-"));
  const config = resolveServeConfig(
    {
      models: [`lori-demo=${demoModelPath}`],
      gpu: "off",
      threads: 1,
      contextSize: 256,
      logRequests: false,
      adaptersPollMs: 0,
      dataDir,
      ...overrides,
      adaptersDir,
    },
    {},
  );
  return createServerCore(config);
}

/** POST a JSON body through the app; returns status and parsed JSON (or text when not JSON). */
export async function postJson(core: ServerCore, route: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await core.app.request(route, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json: json as Record<string, any>, text, headers: response.headers };
}
