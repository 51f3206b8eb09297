import { describe, expect, it } from "vitest";
import { SetTraffic } from "../../src/engine/lanes/set-traffic.js";

describe("SetTraffic", () => {
  it("a set is hot with at least the share and the minimum of the window, and cools below half the share", () => {
    const traffic = new SetTraffic({ window: 8, share: 0.5, minRequests: 3 });
    traffic.record("a");
    traffic.record("a");
    expect(traffic.share("a")).toBe(1);
    expect(traffic.isHot("a")).toBe(false); // 2 < minimum 3
    traffic.record("a");
    expect(traffic.isHot("a")).toBe(true);
    for (let i = 0; i < 5; i++) traffic.record("");
    // Window full: a = 3/8 < 0.5, not hot, but not cooled either (3/8 >= 0.25).
    expect(traffic.count("a")).toBe(3);
    expect(traffic.isHot("a")).toBe(false);
    expect(traffic.hasCooled("a")).toBe(false);
    traffic.record(""); // drops the oldest "a": 2/8 = 0.25, still not cooled
    expect(traffic.count("a")).toBe(2);
    expect(traffic.hasCooled("a")).toBe(false);
    traffic.record(""); // 1/8 < 0.25
    expect(traffic.hasCooled("a")).toBe(true);
    for (let i = 0; i < 8; i++) traffic.record("");
    expect(traffic.count("a")).toBe(0);
    expect(traffic.share("")).toBe(1);
    expect(traffic.isHot("")).toBe(false); // the base model never gets a merged lane
  });
});
