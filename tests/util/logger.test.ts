import { describe, expect, it } from "vitest";
import { createLogger, resolveLogFormat } from "../../src/util/logger.js";

const at = new Date("2026-12-02T06:04:18.123Z");

function capture(format: "json" | "text", minLevel?: "info" | "warn" | "error") {
  const lines: string[] = [];
  const logger = createLogger({ format, ...(minLevel ? { minLevel } : {}), write: (l) => lines.push(l), now: () => at });
  return { logger, lines };
}

describe("logger", () => {
  it("json: one parseable object a line with time, level, event and the fields", () => {
    const { logger, lines } = capture("json");
    logger.info("request", { model: "lori-demo", adapters: "math+safety", total_ms: 12.5 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    expect(JSON.parse(lines[0]!)).toEqual({
      time: "2026-12-02T06:04:18.123Z",
      level: "info",
      event: "request",
      model: "lori-demo",
      adapters: "math+safety",
      total_ms: 12.5,
    });
  });

  it("text: a readable line, words bare, anything ambiguous quoted, message as prose", () => {
    const { logger, lines } = capture("text");
    logger.info("listening", { url: "http://127.0.0.1:8080", adapters: ["math", "code"] });
    logger.warn("fallback_model", { message: "the demo model is missing" });
    logger.info("request", { model: "lori-demo", adapters: null, stream: false, note: "two words", skipped: undefined });
    logger.error("request_failed", { path: "/v1/completions", error: "Error: boom\n    at f (x.js:1:1)" });
    expect(lines).toEqual([
      '06:04:18.123 INFO  listening url=http://127.0.0.1:8080 adapters=["math","code"]\n',
      "06:04:18.123 WARN  fallback_model: the demo model is missing\n",
      '06:04:18.123 INFO  request model=lori-demo adapters=null stream=false note="two words"\n',
      "06:04:18.123 ERROR request_failed path=/v1/completions\n  Error: boom\n      at f (x.js:1:1)\n",
    ]);
  });

  it("drops events below minLevel", () => {
    const { logger, lines } = capture("json", "warn");
    logger.info("request");
    logger.warn("adapter_skipped");
    logger.error("request_failed");
    expect(lines.map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(["adapter_skipped", "request_failed"]);
  });

  it("auto is text on a terminal and JSON otherwise; explicit choices win", () => {
    expect(resolveLogFormat("auto", true)).toBe("text");
    expect(resolveLogFormat("auto", false)).toBe("json");
    expect(resolveLogFormat("json", true)).toBe("json");
    expect(resolveLogFormat("text", false)).toBe("text");
  });
});
