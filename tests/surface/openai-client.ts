import OpenAI from "openai";
import type { ServerCore } from "../../src/server/start-server.js";

/**
 * The official `openai` client wired to an in-process server: its requests go through the whole HTTP app
 * (`app.request`), exactly as over a socket, without one.
 */
export function inProcessClient(core: ServerCore, basePath = "/v1"): OpenAI {
  return new OpenAI({
    baseURL: `http://in-process${basePath}`,
    apiKey: "unused",
    maxRetries: 0,
    timeout: 60_000,
    fetch: (input, init) => Promise.resolve(core.app.request(input instanceof Request ? input : String(input), init)),
  });
}

/** The demo model's tokenizer has one token per byte (id = byte value) for these ASCII characters. */
export function byteToken(char: string): number {
  const code = char.charCodeAt(0);
  if (char.length !== 1 || code > 0x7f) throw new Error(`not one ASCII character: ${JSON.stringify(char)}`);
  return code;
}
