import { LlamaText } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildChatPrompt } from "../../src/engine/chat-prompt.js";
import { toolCallFormat } from "../../src/engine/tool-call-format.js";
import type { ServerCore } from "../../src/server/start-server.js";
import { runToolChat, type ToolChatEvent } from "../../src/serving/tool-calls.js";
import { createInProcessServer } from "../support/in-process.js";
import { greedyParams } from "../support/generation-params.js";

const PARAMS = greedyParams(200, { ignoreEos: false });
const ADD = { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } } };

/**
 * tool_choice auto: the model starts a call by writing the template's call prefix. The demo model never learnt
 * to, so the trigger here is text it does write greedily ("How can", after "Hello! "): the free text must end
 * right before it, and a grammar-constrained call must follow.
 */
describe("tool_choice auto: a call started by the model itself", () => {
  let core: ServerCore;

  beforeAll(async () => {
    core = await createInProcessServer({ contextSize: 2048 }, { withDemoAdapters: false });
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("streams the text before the trigger, then the call, and finishes with tool_calls", async () => {
    const served = core.models.get("lori-demo")!;
    const real = toolCallFormat(served.model, served.chatFormat)!;
    expect(real.triggerStrings).toEqual(["||call:"]);
    // Without the functions' documentation: with it, the demo model ends its turn at once.
    const prompt = buildChatPrompt(served.model, served.chatFormat, [{ role: "user", content: "Hello!" }]);
    const run = async (triggerStrings: string[]) => {
      const events: ToolChatEvent[] = [];
      const generator = runToolChat(
        core,
        {
          served,
          format: { ...real, triggerStrings },
          prompt,
          functions: [{ name: "add", parameters: ADD }, { name: "noop" }],
          mode: "auto",
          params: { ...PARAMS, stop: prompt.stopStrings },
          adapters: served.adapters.resolve([]),
          signal: new AbortController().signal,
        },
        { startedAt: performance.now(), firstTokenAt: null },
      );
      for (let step = await generator.next(); ; step = await generator.next()) {
        if (step.done) return { events, outcome: step.value };
        events.push(step.value);
      }
    };
    const plain = await run(real.triggerStrings as string[]);
    const text = plain.events.map((e) => (e.type === "content" ? e.text : "")).join("");
    expect(plain.events.every((e) => e.type === "content")).toBe(true);
    expect(text).toContain("How can");

    const { events, outcome } = await run(["How can"]);
    const content = events
      .filter((e) => e.type === "content")
      .map((e) => e.text)
      .join("");
    expect(content).toBe(text.slice(0, text.indexOf("How can")));
    const call = events.find((e) => e.type === "call");
    expect(call && ["add", "noop"]).toContain(call?.type === "call" ? call.name : undefined);
    const args = events
      .filter((e) => e.type === "arguments")
      .map((e) => e.text)
      .join("");
    const parsed = JSON.parse(args) as Record<string, unknown>;
    if (call?.type === "call" && call.name === "add") {
      expect(Object.keys(parsed).sort()).toEqual(["a", "b"]);
      expect(Number.isInteger(parsed.a) && Number.isInteger(parsed.b)).toBe(true);
    } else expect(parsed).toEqual({});
    expect(outcome.finishReason).toBe("tool_calls");
    expect(outcome.result.completionTokens).toBeGreaterThan(0);
    expect(args).toBe(args.trimEnd());
    expect(LlamaText(real.prefix).toString()).toBe("||call: ");
  });
});
