import { describe, expect, it } from "vitest";
import { QueueFullError, RequestAbortedError, ShuttingDownError } from "../../src/engine/engine-errors.js";
import { LaneScheduler, type LaneSchedulerOptions, type SequenceLease } from "../../src/engine/lanes/lane-scheduler.js";
import { IllegalLaneTransitionError, LANE_STATES, nextLaneState, type LaneState } from "../../src/engine/lanes/lane-state.js";
import { binding, FakeLaneEngine, settle, type FakeSequence } from "./fake-lane-engine.js";

// Unit tests of the lane scheduler on a fake engine whose opens and swaps the test settles by hand
// (the real engine's behaviour is covered by the other suites in tests/lanes).

interface Setup {
  engine: FakeLaneEngine;
  scheduler: LaneScheduler<FakeSequence>;
  swaps: string[];
  failures: string[];
}

async function started(options: Partial<LaneSchedulerOptions> = {}, evictionFailures: string[] = []): Promise<Setup> {
  const sequences = options.sequences ?? 2;
  const engine = new FakeLaneEngine(sequences);
  const swaps: string[] = [];
  const failures: string[] = [];
  const scheduler = new LaneScheduler<FakeSequence>(
    engine,
    { sequences, contextSize: 256, threads: 1, maxLanes: 2, maxQueue: 100, agingMs: 60_000, maxAdapters: 8, ...options },
    {
      onSwap: (from, to, _ms, lane) => swaps.push(`${lane.id}:${from.label || "base"}->${to.label || "base"}`),
      onLaneFailed: (lane, error) => failures.push(`${lane.id}:${error.message}`),
      onAdapterEvictionFailed: (filePath, error) => evictionFailures.push(`${filePath}: ${error.message}`),
    },
  );
  const start = scheduler.start(binding(""));
  engine.finishOpens();
  await start;
  return { engine, scheduler, swaps, failures };
}

/** One request: its lease marks the sequence in use until `release()`. */
function request(scheduler: LaneScheduler<FakeSequence>, set: string) {
  const controller = new AbortController();
  const r = {
    controller,
    lease: undefined as SequenceLease<FakeSequence> | undefined,
    error: undefined as Error | undefined,
    done: undefined as unknown as Promise<void>,
    release() {
      r.lease!.sequence.inUse = false;
      r.lease!.release();
    },
  };
  r.done = scheduler.acquire(binding(set), [], controller.signal).then(
    (lease) => {
      lease.sequence.inUse = true;
      r.lease = lease;
    },
    (error: Error) => {
      r.error = error;
    },
  );
  return r;
}

function lanesOf(scheduler: LaneScheduler<FakeSequence>, label: string) {
  return scheduler.stats.bindings.filter((b) => b.label === label);
}

describe("lane states", () => {
  it("allows exactly the moves of the table and throws on any other", () => {
    const legal: Record<LaneState, LaneState[]> = {
      opening: ["ready", "failed", "disposed"],
      binding: ["binding", "ready", "failed", "disposed"],
      ready: ["busy", "binding", "disposed"],
      busy: ["ready", "draining", "disposed"],
      draining: ["busy", "ready", "binding", "disposed"],
      failed: ["disposed"],
      disposed: [],
    };
    for (const from of LANE_STATES) {
      for (const to of LANE_STATES) {
        if (legal[from].includes(to)) expect(nextLaneState(1, from, to)).toBe(to);
        else expect(() => nextLaneState(1, from, to)).toThrow(IllegalLaneTransitionError);
      }
    }
    expect(() => nextLaneState(3, "busy", "binding")).toThrow("lane 3: illegal state transition busy -> binding");
  });
});

describe("lane scheduler (fake contexts)", () => {
  it("fills a lane before opening another: a burst of N for one new set opens ceil(N / parallel) lanes (defect 8)", async () => {
    for (const [burst, lanes] of [
      [8, 2],
      [5, 2],
      [4, 1],
    ] as const) {
      const { engine, scheduler } = await started({ sequences: 4, maxLanes: 4 });
      const requests = Array.from({ length: burst }, () => request(scheduler, "s"));
      expect(engine.openPending.map((o) => o.binding.label)).toEqual(Array(lanes).fill("s"));
      expect(scheduler.stats.lanesByState.opening).toBe(lanes);
      expect(scheduler.stats.reserved).toBe(burst);
      engine.finishOpens();
      await Promise.all(requests.map((r) => r.done));
      expect(requests.every((r) => r.lease)).toBe(true);
      const busy = lanesOf(scheduler, "s").map((b) => b.busy);
      expect(busy.sort()).toEqual(lanes === 2 ? [burst - 4, 4].sort() : [burst]);
      expect(engine.violations).toEqual([]);
    }
  });

  it("counts a lane that is still opening as capacity for requests that arrive later", async () => {
    const { engine, scheduler } = await started({ sequences: 4, maxLanes: 4 });
    const first = request(scheduler, "s");
    await settle();
    const second = request(scheduler, "s");
    await settle();
    expect(engine.openPending).toHaveLength(1);
    engine.finishOpens();
    await Promise.all([first.done, second.done]);
    expect(first.lease!.lane).toBe(second.lease!.lane);
  });

  it("never rebinds a busy lane; rebinds it once its last sequence is back", async () => {
    const { engine, scheduler, swaps } = await started({ maxLanes: 1 });
    const base = request(scheduler, "");
    await base.done;
    const other = request(scheduler, "t");
    await settle();
    expect(engine.pendingSwaps).toHaveLength(0);
    expect(scheduler.stats.queued).toBe(1);
    base.release();
    expect(scheduler.stats.lanesByState.binding).toBe(1);
    await settle();
    expect(engine.pendingSwaps).toHaveLength(1);
    engine.pendingSwaps[0]!.finish();
    await other.done;
    expect(other.lease!.swapped).toBe(true);
    expect(swaps).toEqual(["0:base->t"]);
    expect(engine.violations).toEqual([]);
  });

  it("rejects a request aborted while queued, and the lane is not swapped for it", async () => {
    const { engine, scheduler } = await started({ maxLanes: 1, sequences: 1 });
    const base = request(scheduler, "");
    await base.done;
    const queued = request(scheduler, "t");
    await settle();
    queued.controller.abort();
    await queued.done;
    expect(queued.error).toBeInstanceOf(RequestAbortedError);
    expect(scheduler.stats.queued).toBe(0);
    base.release();
    expect(engine.pendingSwaps).toHaveLength(0);
    expect(scheduler.stats.lanesByState.ready).toBe(1);
  });

  it("rejects a request aborted while its lane opens at once; the lane still opens and serves the next one", async () => {
    const { engine, scheduler } = await started({ maxLanes: 2 });
    const aborted = request(scheduler, "s");
    expect(engine.openPending).toHaveLength(1);
    aborted.controller.abort();
    await aborted.done;
    expect(aborted.error).toBeInstanceOf(RequestAbortedError);
    expect(scheduler.stats.reserved).toBe(0);
    engine.finishOpens();
    await settle();
    expect(lanesOf(scheduler, "s")).toMatchObject([{ state: "ready", busy: 0 }]);
    const next = request(scheduler, "s");
    await next.done;
    expect(next.lease!.lane.binding.label).toBe("s");
    expect(engine.opens).toHaveLength(2);
  });

  it("rejects an already-aborted request without queueing it", async () => {
    const { scheduler } = await started();
    const controller = new AbortController();
    controller.abort();
    await expect(scheduler.acquire(binding("s"), [], controller.signal)).rejects.toBeInstanceOf(RequestAbortedError);
    expect(scheduler.stats.queued).toBe(0);
  });

  it("answers queue full beyond maxQueue", async () => {
    const { scheduler } = await started({ maxLanes: 1, sequences: 1, maxQueue: 1 });
    const base = request(scheduler, "");
    await base.done;
    const queued = request(scheduler, "");
    const rejected = request(scheduler, "");
    await rejected.done;
    expect(rejected.error).toBeInstanceOf(QueueFullError);
    base.release();
    await queued.done;
    expect(queued.lease).toBeDefined();
  });

  it("retires a lane that fails to open: its first waiter gets the error, the others are re-queued and served", async () => {
    const { engine, scheduler, failures } = await started({ maxLanes: 2, sequences: 2 });
    const first = request(scheduler, "s");
    const second = request(scheduler, "s");
    expect(engine.openPending).toHaveLength(1);
    engine.openPending[0]!.fail(new Error("out of memory"));
    await first.done;
    expect(first.error?.message).toBe("out of memory");
    await settle();
    expect(failures).toEqual(["1:out of memory"]);
    // The failed lane freed its place: the re-queued waiter opened a new one.
    expect(engine.openPending).toHaveLength(1);
    engine.finishOpens();
    await second.done;
    expect(second.lease!.lane.id).toBe(2);
    expect(scheduler.stats.lanes).toBe(2);
  });

  it("binds a lane back to its set when a swap fails; the waiter gets the error, the next one is served", async () => {
    const { engine, scheduler, swaps } = await started({ maxLanes: 1, sequences: 2 });
    const failing = request(scheduler, "t");
    const other = request(scheduler, "u");
    await settle();
    expect(engine.pendingSwaps).toHaveLength(1);
    engine.pendingSwaps[0]!.fail(new Error("bad adapter file"));
    await failing.done;
    expect(failing.error?.message).toBe("bad adapter file");
    await settle();
    // Swap back to the base set, then on to "u" for the queued request.
    expect(engine.pendingSwaps.map((s) => s.loras.map((l) => l.filePath))).toEqual([["/adapters/t.gguf"], []]);
    engine.pendingSwaps[1]!.finish();
    await settle();
    expect(engine.pendingSwaps).toHaveLength(3);
    engine.pendingSwaps[2]!.finish();
    await other.done;
    expect(other.lease!.lane.binding.label).toBe("u");
    expect(swaps).toEqual(["0:base->u"]);
    expect(engine.violations).toEqual([]);
  });

  it("retires a lane whose swap back fails too, and opens a new one for the waiters it had", async () => {
    const { engine, scheduler, failures } = await started({ maxLanes: 1, sequences: 2 });
    const failing = request(scheduler, "t");
    const waiting = request(scheduler, "u");
    await settle();
    engine.pendingSwaps[0]!.fail(new Error("bad adapter file"));
    await settle();
    engine.pendingSwaps[1]!.fail(new Error("context broken"));
    await settle();
    expect(failing.error?.message).toBe("bad adapter file");
    expect(failures).toEqual(["0:context broken"]);
    expect(engine.opens[0]!.context.disposed).toBe(true);
    expect(engine.openPending.map((o) => o.binding.label)).toEqual(["u"]);
    engine.finishOpens();
    await waiting.done;
    expect(waiting.lease!.lane.id).toBe(1);
    expect(scheduler.stats.lanesByState).toMatchObject({ busy: 1, failed: 0, disposed: 0 });
  });

  it("rejects a waiter whose lane finishes opening after dispose, and frees that context (defect 12)", async () => {
    const { engine, scheduler } = await started({ maxLanes: 2 });
    const opening = request(scheduler, "s");
    const disposed = scheduler.dispose();
    await opening.done;
    expect(opening.error).toBeInstanceOf(ShuttingDownError);
    let done = false;
    void disposed.then(() => (done = true));
    await settle();
    expect(done).toBe(false); // waits for the open in progress
    engine.finishOpens();
    await disposed;
    expect(engine.opens.every((o) => o.context.disposed)).toBe(true);
    expect(scheduler.stats.lanes).toBe(0);
    await expect(scheduler.acquire(binding("s"), [], new AbortController().signal)).rejects.toBeInstanceOf(ShuttingDownError);
  });

  it("after dispose, every pending acquire rejects (queued or reserved) and later ones too; leases out become no-ops", async () => {
    const { engine, scheduler } = await started({ maxLanes: 1, sequences: 1 });
    const held = request(scheduler, "");
    await held.done;
    const queued = request(scheduler, "t");
    await scheduler.dispose();
    await queued.done;
    expect(queued.error).toBeInstanceOf(ShuttingDownError);
    held.release();
    held.release();
    expect(engine.violations).toEqual([]);
    const late = request(scheduler, "");
    await late.done;
    expect(late.error).toBeInstanceOf(ShuttingDownError);
  });

  it("FIFO with aging: an aged request drains a busy lane of another set and gets it before younger ones", async () => {
    const { engine, scheduler } = await started({ maxLanes: 2, sequences: 2, agingMs: 5 });
    const base = [request(scheduler, ""), request(scheduler, "")];
    const x = request(scheduler, "x");
    engine.finishOpens();
    await Promise.all([...base, x].map((r) => r.done));
    const aged = request(scheduler, "y");
    await new Promise((r) => setTimeout(r, 10));
    // A younger request for "x" arrives: "y" is aged, so lane 1 (x, one sequence out) drains for it.
    const younger = request(scheduler, "x");
    await settle();
    expect(lanesOf(scheduler, "x")).toMatchObject([{ lane: 1, state: "draining", busy: 1 }]);
    expect(younger.lease).toBeUndefined();
    x.release();
    expect(lanesOf(scheduler, "y")).toMatchObject([{ lane: 1, state: "binding" }]);
    await settle();
    expect(engine.pendingSwaps).toHaveLength(1);
    engine.pendingSwaps[0]!.finish();
    await aged.done;
    expect(aged.lease!.lane.id).toBe(1);
    expect(younger.lease).toBeUndefined();
    expect(engine.violations).toEqual([]);
  });

  it("a draining lane whose only reservation aborts goes back to serving its own set", async () => {
    const { engine, scheduler } = await started({ maxLanes: 1, sequences: 2, agingMs: 5 });
    const held = request(scheduler, "");
    await held.done;
    const aged = request(scheduler, "y");
    await new Promise((r) => setTimeout(r, 10));
    const trigger = request(scheduler, "z");
    await settle();
    expect(scheduler.stats.lanesByState.draining).toBe(1);
    aged.controller.abort();
    await aged.done;
    expect(scheduler.stats.lanesByState).toMatchObject({ busy: 1, draining: 0 });
    const sameSet = request(scheduler, "");
    await sameSet.done;
    expect(sameSet.lease!.lane.id).toBe(0);
    trigger.controller.abort();
    await trigger.done;
    expect(engine.pendingSwaps).toHaveLength(0);
  });

  it("releases adapter references of a retired lane only after its context is disposed", async () => {
    const { engine, scheduler } = await started({ maxLanes: 1, sequences: 1, maxAdapters: 0 });
    const t = request(scheduler, "t");
    await settle();
    engine.pendingSwaps[0]!.finish();
    await t.done;
    t.release();
    const u = request(scheduler, "u");
    await settle();
    engine.pendingSwaps[1]!.finish();
    await u.done;
    await scheduler.residency.settled();
    expect(engine.unloaded).toEqual(["/adapters/t.gguf"]);
    u.release();
    await scheduler.dispose();
    expect(engine.unloaded).toEqual(["/adapters/t.gguf", "/adapters/u.gguf"]);
    expect(engine.opens[0]!.context.disposed).toBe(true);
    expect(engine.violations).toEqual([]);
  });

  it("FIFO with aging: an aged request whose set has a busy lane is not overtaken by younger ones", async () => {
    const { engine, scheduler } = await started({ maxLanes: 2, sequences: 2, agingMs: 5 });
    const base = request(scheduler, "");
    const xs = [request(scheduler, "x"), request(scheduler, "x")];
    engine.finishOpens();
    await Promise.all([base.done, ...xs.map((r) => r.done)]);
    const aged = request(scheduler, "x");
    await new Promise((r) => setTimeout(r, 10));
    // The base lane has a free sequence, but the aged "x" request is first in line: nobody overtakes it.
    const younger = request(scheduler, "");
    await settle();
    expect(younger.lease).toBeUndefined();
    expect(scheduler.stats.lanesByState).toMatchObject({ busy: 2, draining: 0 });
    xs[0]!.release();
    await Promise.all([aged.done, younger.done]);
    expect(aged.lease!.lane.id).toBe(1);
    expect(younger.lease!.lane.id).toBe(0);
    expect(engine.pendingSwaps).toHaveLength(0);
  });

  it("reports a failed adapter unload instead of leaving its promise unhandled", async () => {
    const evictionFailures: string[] = [];
    const { engine, scheduler } = await started({ maxLanes: 1, sequences: 1, maxAdapters: 0 }, evictionFailures);
    engine.unloadError = new Error("unload failed");
    const t = request(scheduler, "t");
    await settle();
    engine.pendingSwaps[0]!.finish();
    await t.done;
    t.release();
    const u = request(scheduler, "u");
    await settle();
    engine.pendingSwaps[1]!.finish();
    await u.done;
    await scheduler.residency.settled();
    expect(evictionFailures).toEqual(["/adapters/t.gguf: unload failed"]);
    u.release();
    await scheduler.dispose();
  });
});
