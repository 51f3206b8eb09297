import { describe, expect, it } from "vitest";
import { SerializedEvent, sseResponse } from "../../src/http/sse.js";

/** Every read of the response body, as text: one entry per chunk the server handed to the socket. */
async function reads(response: Response, between?: (index: number) => void): Promise<string[]> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const out: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(decoder.decode(value));
    between?.(out.length);
  }
}

describe("sseResponse", () => {
  it("writes the events that are ready in the same turn of the event loop together, each its own data line", async () => {
    let closed = 0;
    async function* events() {
      yield { a: 1 };
      yield new SerializedEvent('{"b":2}');
      yield { c: "x\ny" };
    }
    const chunks = await reads(sseResponse(events(), () => closed++));
    expect(chunks).toEqual(['data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c":"x\\ny"}\n\ndata: [DONE]\n\n']);
    expect(closed).toBe(1);
  });

  it("does not hold an event back waiting for one that is not ready", async () => {
    // The second event waits for a gate the test opens only after it has read the first one: if the first
    // were held back for it, the read would never come and the test would time out.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    async function* events() {
      yield { first: true };
      await gate;
      yield { second: true };
    }
    const chunks = await reads(
      sseResponse(events(), () => undefined),
      (count) => {
        if (count === 1) open();
      },
    );
    expect(chunks).toEqual(['data: {"first":true}\n\n', 'data: {"second":true}\n\ndata: [DONE]\n\n']);
  });

  it("sends the events before a failure, then the error in-band and [DONE]", async () => {
    async function* events(): AsyncGenerator<object, void, void> {
      yield { ok: 1 };
      throw new Error("engine gone");
    }
    const text = (await reads(sseResponse(events(), () => undefined))).join("");
    const lines = text.split("\n\n").filter((l) => l.length > 0);
    expect(lines[0]).toBe('data: {"ok":1}');
    expect(JSON.parse(lines[1]!.slice(6))).toMatchObject({ error: { message: "engine gone", code: "generation_failed" } });
    expect(lines[2]).toBe("data: [DONE]");
    expect(lines).toHaveLength(3);
  });

  it("a failure of a step asked for ahead, after the turn, still reaches the client in-band", async () => {
    let fail!: () => void;
    const failed = new Promise<void>((_, reject) => {
      fail = () => reject(new Error("late failure"));
    });
    async function* events(): AsyncGenerator<object, void, void> {
      yield { ok: 1 };
      await failed;
    }
    const chunks = await reads(
      sseResponse(events(), () => undefined),
      (count) => {
        if (count === 1) fail();
      },
    );
    expect(chunks[0]).toBe('data: {"ok":1}\n\n');
    expect(chunks.slice(1).join("")).toContain('"message":"late failure"');
    expect(chunks.at(-1)!.endsWith("data: [DONE]\n\n")).toBe(true);
  });
});
