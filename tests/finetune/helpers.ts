import OpenAI from "openai";
import type { ServerCore } from "../../src/server/start-server.js";

/** The official client, talking to an in-process server core (no socket). */
export function clientFor(core: ServerCore, apiKey = "unused"): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: "http://lori.test/v1",
    maxRetries: 0,
    fetch: async (input: string | URL | Request, init?: RequestInit) => core.app.fetch(new Request(input, init)),
  });
}

export const TRAIN_NAMES = [
  "Tom",
  "Lily",
  "Ben",
  "Sue",
  "Max",
  "Anna",
  "Sam",
  "Mia",
  "Tim",
  "Zoe",
  "Leo",
  "Ava",
  "Eli",
  "Ivy",
  "Noah",
  "Ruby",
  "Finn",
  "Nora",
  "Jack",
  "Ella",
  "Adam",
  "Bella",
  "Carl",
  "Dora",
  "Evan",
  "Fay",
  "Gus",
  "Hana",
  "Ian",
  "Jade",
  "Kurt",
  "Lena",
  "Milo",
  "Nina",
  "Owen",
  "Pia",
  "Rex",
  "Sara",
  "Ted",
  "Uma",
];

export const SECRET = "zebra";

/**
 * A task the demo base cannot do: it has never heard of the secret word. Every training prompt is asked by a
 * different person; the held-out prompt by a name that is in no training line.
 */
export function secretWordTask(): { lines: string[]; heldOut: string } {
  const lines = TRAIN_NAMES.map((name) =>
    JSON.stringify({
      messages: [
        { role: "user", content: `${name} asks: what is the secret word?` },
        { role: "assistant", content: `The secret word is ${SECRET}.` },
      ],
    }),
  );
  return { lines, heldOut: "Oscar asks: what is the secret word?" };
}

export async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
