import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { resolveServeConfig, type ServeConfig } from "../../src/config/serve-config.js";
import { startServer, type RunningServer } from "../../src/server/start-server.js";
import { fixturePath } from "./fixtures.js";

/** stories260K from ../shared/fixtures, or null on a fresh clone without it. */
export const storiesModelPath: string | null = fixturePath("models/stories260K.gguf");

export const skipWithoutStories = storiesModelPath === null;
if (skipWithoutStories) {
  console.warn("[tests] ../shared/fixtures/models/stories260K.gguf not found: stories260K tests are skipped");
}

export const CHATML_TEMPLATE =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

export interface TestServer {
  server: RunningServer;
  client: OpenAI;
  baseUrl: string;
}

/**
 * A real server on a free loopback port, one thread, quiet logs. Without `adaptersDir` it gets an empty one of
 * its own (the repository's adapters/ holds the demo adapters).
 */
export async function startTestServer(overrides: Partial<Record<keyof ServeConfig, unknown>> = {}): Promise<TestServer> {
  const adaptersDir = overrides.adaptersDir ?? mkdtempSync(join(tmpdir(), "lori-test-adapters-"));
  const config = resolveServeConfig(
    { host: "127.0.0.1", port: 0, gpu: "off", threads: 1, contextSize: 512, logRequests: false, ...overrides, adaptersDir },
    {},
  );
  const server = await startServer(config);
  const apiKey = (config.apiKeys[0] as string | undefined) ?? "unused";
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
  return { server, client, baseUrl: server.url };
}
