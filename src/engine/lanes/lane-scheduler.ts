import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { QueueFullError, RequestAbortedError, ShuttingDownError } from "../engine-errors.js";
import { Lane } from "./lane.js";
import type { LaneBinding } from "./lane-binding.js";
import type { LaneEngine, LaneSequence } from "./lane-context.js";
import { LANE_STATES, type LaneState } from "./lane-state.js";
import { llamaLaneEngine, type LaneContextOptions } from "./llama-lane-context.js";
import { LoraResidency, type ResidencyEvents } from "./lora-residency.js";
import type { SequenceLease as Lease, Waiter } from "./waiter.js";

export type { Lane } from "./lane.js";
export type SequenceLease<S extends LaneSequence = LlamaContextSequence> = Lease<S>;

export interface LaneSchedulerOptions extends LaneContextOptions {
  readonly maxLanes: number;
  readonly maxQueue: number;
  /** A request waiting longer than this is not overtaken: a lane is drained for it, or younger ones wait. */
  readonly agingMs: number;
  /** Loaded adapter files kept resident when no lane uses them (LRU beyond). */
  readonly maxAdapters: number;
}

export interface LaneEvents<S extends LaneSequence = LlamaContextSequence> extends ResidencyEvents {
  onSwap?(from: LaneBinding, to: LaneBinding, ms: number, lane: Lane<S>): void;
  onLaneCreated?(lane: Lane<S>, ms: number): void;
  /**
   * A lane's open, swap or dispose failed (a lane whose open or swap back failed is retired, its waiters
   * re-queued or rejected), or a reaction to one of them threw.
   */
  onLaneFailed?(lane: Lane<S>, error: Error): void;
  /** A batch was decoded: its tokens and how many sequences it served (for a tokens-per-decode histogram). */
  onDecode?(tokens: number, sequences: number): void;
}

/**
 * Routes each request to a lane already bound to its adapter set (same-set requests batch); else reserves a
 * sequence on a lane being opened or rebound for that set; else opens a lane within `maxLanes`; else rebinds
 * the least-recently-used idle lane; else the request waits, FIFO with aging, in a bounded queue. A lane
 * with sequences out is never rebound: an aged request drains one (no new requests) and gets it once empty.
 * Lanes move only through the states of lane-state.ts; every failure retires the lane and settles its
 * waiters, so no promise is left hanging and none rejects unhandled.
 */
export class LaneScheduler<S extends LaneSequence = LlamaContextSequence> {
  private readonly lanes: Array<Lane<S>> = [];
  private readonly queue: Array<Waiter<S>> = [];
  private nextLaneId = 0;
  private disposing: Promise<void> | undefined;
  private knownContextSize: number | undefined;
  /** Why a lane failed to open (start() rethrows it). */
  private readonly openErrors = new WeakMap<Lane<S>, Error>();
  readonly residency: LoraResidency;

  constructor(
    private readonly engine: LaneEngine<S>,
    private readonly options: LaneSchedulerOptions,
    private readonly events: LaneEvents<S> = {},
  ) {
    this.residency = new LoraResidency((filePath) => engine.unloadAdapter(filePath), options.maxAdapters, events);
  }

  /** The scheduler of the server: lanes are node-llama-cpp contexts of `model`. */
  static forModel(model: LlamaModel, options: LaneSchedulerOptions, events: LaneEvents = {}): LaneScheduler {
    return new LaneScheduler(llamaLaneEngine(model, options, events.onDecode), options, events);
  }

  /** Opens the first lane on `base`, so the server is ready for plain requests; throws if that fails. */
  async start(base: LaneBinding): Promise<void> {
    const lane = this.openLane(base);
    await lane.pending;
    if (lane.state !== "ready") throw this.openErrors.get(lane) ?? new Error("the first lane did not open");
  }

  get contextSize(): number {
    return this.knownContextSize ?? this.options.contextSize;
  }

  get stats() {
    const lanesByState = Object.fromEntries(LANE_STATES.map((s) => [s, 0])) as Record<LaneState, number>;
    for (const lane of this.lanes) lanesByState[lane.state]++;
    const reserved = this.lanes.flatMap((l) => l.reservations);
    return {
      lanes: this.lanes.length,
      lanesByState,
      busyLanes: this.lanes.filter((l) => l.busy > 0).length,
      busySequences: this.lanes.reduce((n, l) => n + l.busy, 0),
      /** Requests without a sequence yet: in the queue, or promised one on a lane being prepared. */
      queued: this.queue.length + reserved.length,
      reserved: reserved.length,
      maxLanes: this.options.maxLanes,
      bindings: this.lanes.map((l) => ({ lane: l.id, label: l.binding.label, state: l.state, busy: l.busy, size: l.size })),
      waitingLabels: [...this.queue, ...reserved].map((w) => w.binding.label),
      /** Batches decoded since start, all lanes (null when the engine does not count them). */
      decodes: this.engine.decodeStats?.() ?? null,
    };
  }

  /** KV cells holding tokens, over all cells of all lanes. */
  kvUsage(): { used: number; total: number } {
    let used = 0;
    let total = 0;
    for (const lane of this.lanes) {
      const usage = lane.kvUsage();
      used += usage.used;
      total += usage.total;
    }
    return { used, total };
  }

  /**
   * A sequence on a lane bound to `binding`. Rejects with RequestAbortedError when `signal` aborts first,
   * QueueFullError when the queue is full, ShuttingDownError once disposed, or the lane's error when opening
   * or rebinding a lane for this request failed.
   */
  acquire(binding: LaneBinding, promptTokens: readonly Token[], signal: AbortSignal): Promise<SequenceLease<S>> {
    if (this.disposing) return Promise.reject(new ShuttingDownError());
    if (signal.aborted) return Promise.reject(new RequestAbortedError());
    return new Promise<SequenceLease<S>>((resolve, reject) => {
      let settled = false;
      const onAbort = () => this.abandon(waiter);
      const settle = () => {
        settled = true;
        signal.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter<S> = {
        binding,
        promptTokens,
        enqueuedAt: performance.now(),
        resolve(lease) {
          // Never happens (settled waiters leave the queue first); if it did, give the sequence back later,
          // not from inside the pump that is handing it out.
          if (settled) {
            queueMicrotask(() => lease.release());
            return;
          }
          settle();
          resolve(lease);
        },
        reject(error) {
          if (settled) return;
          settle();
          reject(error);
        },
      };
      this.queue.push(waiter);
      this.pump();
      if (settled) return;
      if (this.queue.includes(waiter) && this.queue.length > this.options.maxQueue) {
        this.removeFromQueue(waiter);
        waiter.reject(new QueueFullError(1));
        return;
      }
      // Queued, or reserved on a lane being prepared: either way it may still be abandoned.
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Rejects everyone still waiting, queued or reserved (shutdown). */
  rejectWaiting(error: Error): void {
    for (const waiter of this.queue.splice(0)) waiter.reject(error);
    for (const lane of this.lanes) {
      for (const waiter of lane.reservations.splice(0)) waiter.reject(error);
      this.afterReservationsChanged(lane);
    }
  }

  /**
   * Rejects every pending and future acquire, waits for opens and swaps in progress, then frees every
   * context. Leases still out become no-ops. Idempotent.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.disposeAll();
    return this.disposing;
  }

  private async disposeAll(): Promise<void> {
    this.rejectWaiting(new ShuttingDownError());
    await Promise.all(this.lanes.map((lane) => this.disposeLane(lane)));
    await this.residency.settled();
  }

  private async disposeLane(lane: Lane<S>): Promise<void> {
    for (let op = lane.pending; ; op = lane.pending) {
      await op;
      if (op === lane.pending) break;
    }
    if (lane.state === "disposed") return;
    lane.moveTo("disposed");
    await this.freeContext(lane, [lane.binding]);
  }

  // --- serving -------------------------------------------------------------------------------------------

  /** Serves waiters in order; an aged waiter gets a lane drained for it, or stops younger ones overtaking. */
  private pump(): void {
    if (this.disposing) return;
    const now = performance.now();
    for (let i = 0; i < this.queue.length; ) {
      const waiter = this.queue[i]!;
      const aged = now - waiter.enqueuedAt > this.options.agingMs;
      if (this.tryServe(waiter) || (aged && this.drainFor(waiter))) {
        this.queue.splice(i, 1);
        continue;
      }
      if (aged) break;
      i++;
    }
  }

  private tryServe(waiter: Waiter<S>): boolean {
    const { key } = waiter.binding;
    const ready = this.lanes.find((l) => l.binding.key === key && l.available > 0);
    if (ready) {
      this.hand(ready, waiter, false);
      return true;
    }
    // A lane is being prepared for this set and has room: wait for it rather than take another lane.
    const pending = this.lanes.find((l) => {
      const target = l.pendingFor;
      return target !== undefined && target.key === key && target.room > 0;
    });
    if (pending) {
      pending.reservations.push(waiter);
      return true;
    }
    if (this.lanes.length < this.options.maxLanes) {
      this.openLane(waiter.binding).reservations.push(waiter);
      return true;
    }
    const idle = this.lanes.filter((l) => l.idle).sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (idle) {
      idle.reservations.push(waiter);
      this.rebindLane(idle, waiter.binding);
      return true;
    }
    return false;
  }

  /**
   * Reserves a busy lane of another set for an aged waiter: it takes no new requests and is rebound once its
   * sequences are back. Not when a lane of the waiter's own set is busy (its next free sequence goes to the
   * oldest waiter anyway). Picks the lane with the fewest sequences out, then the least recently used.
   */
  private drainFor(waiter: Waiter<S>): boolean {
    if (this.lanes.some((l) => l.state === "busy" && l.binding.key === waiter.binding.key)) return false;
    const lane = this.lanes.filter((l) => l.state === "busy").sort((a, b) => a.busy - b.busy || a.lastUsed - b.lastUsed)[0];
    if (!lane) return false;
    lane.moveTo("draining");
    lane.nextBinding = waiter.binding;
    lane.reservations.push(waiter);
    return true;
  }

  private hand(lane: Lane<S>, waiter: Waiter<S>, swapped: boolean): void {
    const sequence = lane.take(waiter.promptTokens);
    if (lane.state === "ready") lane.moveTo("busy");
    let released = false;
    waiter.resolve({
      sequence,
      lane,
      swapped,
      waitMs: performance.now() - waiter.enqueuedAt,
      release: () => {
        if (released) return;
        released = true;
        this.giveBack(lane, sequence);
      },
    });
  }

  private giveBack(lane: Lane<S>, sequence: S): void {
    if (lane.state !== "busy" && lane.state !== "draining") return; // disposed (or failed) meanwhile
    lane.giveBack(sequence);
    if (lane.busy === 0) {
      if (lane.state === "busy") lane.moveTo("ready");
      else this.finishDrain(lane);
    }
    this.pump();
  }

  /** A draining lane's last sequence is back: rebind it for its reservations (or serve them as it is). */
  private finishDrain(lane: Lane<S>): void {
    const next = lane.nextBinding;
    lane.nextBinding = undefined;
    if (next && lane.reservations.length > 0 && next.key !== lane.binding.key) {
      this.rebindLane(lane, next);
      return;
    }
    lane.moveTo("ready");
    this.settleReservations(lane, false);
  }

  /** Hands promised sequences once the lane is ready; waiters it cannot serve go back to the queue. */
  private settleReservations(lane: Lane<S>, swapped: boolean): void {
    const back: Array<Waiter<S>> = [];
    for (const waiter of lane.reservations.splice(0)) {
      if (waiter.binding.key === lane.binding.key && lane.available > 0) this.hand(lane, waiter, swapped);
      else back.push(waiter);
    }
    this.requeue(back);
  }

  /** Puts waiters back in the queue in the order they first arrived (they keep their age). */
  private requeue(waiters: ReadonlyArray<Waiter<S>>): void {
    if (waiters.length === 0) return;
    this.queue.push(...waiters);
    this.queue.sort((a, b) => a.enqueuedAt - b.enqueuedAt);
  }

  /** An aborted waiter leaves the queue or its reservation. */
  private abandon(waiter: Waiter<S>): void {
    if (!this.removeFromQueue(waiter)) {
      const lane = this.lanes.find((l) => l.reservations.includes(waiter));
      if (lane) {
        lane.reservations.splice(lane.reservations.indexOf(waiter), 1);
        this.afterReservationsChanged(lane);
      }
    }
    waiter.reject(new RequestAbortedError());
    this.pump();
  }

  /** A draining lane nobody waits for any more goes back to serving its own set. */
  private afterReservationsChanged(lane: Lane<S>): void {
    if (lane.state === "draining" && lane.reservations.length === 0) {
      lane.nextBinding = undefined;
      lane.moveTo("busy");
    }
  }

  private removeFromQueue(waiter: Waiter<S>): boolean {
    const at = this.queue.indexOf(waiter);
    if (at === -1) return false;
    this.queue.splice(at, 1);
    return true;
  }

  // --- opening, binding, failing ---------------------------------------------------------------------------

  /** A new lane in state "opening"; its waiters reserve it, and get their sequences once it is ready. */
  private openLane(binding: LaneBinding): Lane<S> {
    const lane = new Lane<S>(this.nextLaneId++, this.options.sequences, binding);
    this.lanes.push(lane);
    this.residency.retain(binding);
    const started = performance.now();
    const opened = this.engine.openContext(binding).then(
      (context) => {
        lane.attach(context);
        if (this.disposing) return; // disposeLane frees it
        this.knownContextSize ??= context.contextSize;
        lane.moveTo("ready");
        this.events.onLaneCreated?.(lane, performance.now() - started);
        this.settleReservations(lane, false);
        this.pump();
      },
      (error: unknown) => {
        this.openErrors.set(lane, error as Error);
        return this.fail(lane, error as Error, [binding]);
      },
    );
    lane.pending = this.guarded(lane, opened);
    return lane;
  }

  /** Swaps the adapter set of an idle (or drained) lane; its reservations are served once it is bound. */
  private rebindLane(lane: Lane<S>, binding: LaneBinding): void {
    const previous = lane.binding;
    lane.moveTo("binding");
    lane.binding = binding;
    this.residency.retain(binding);
    const started = performance.now();
    const swapped = this.swap(lane, binding).then(
      () => {
        this.residency.release(previous);
        if (this.disposing) return; // disposeLane frees it
        this.events.onSwap?.(previous, binding, performance.now() - started, lane);
        lane.moveTo("ready");
        this.settleReservations(lane, true);
        this.pump();
      },
      (error: unknown) => this.rebindBack(lane, previous, binding, error as Error),
    );
    lane.pending = this.guarded(lane, swapped);
  }

  /**
   * A swap failed and the context may hold part of the new set: the waiter it was for gets the error, the
   * others go back to the queue, and the lane is bound back to its previous set. If that fails too, the
   * lane is retired.
   */
  private rebindBack(lane: Lane<S>, previous: LaneBinding, failed: LaneBinding, error: Error): Promise<void> {
    const [first, ...rest] = lane.reservations.splice(0);
    first?.reject(error);
    this.requeue(rest);
    lane.moveTo("binding");
    lane.binding = previous;
    const restored = this.swap(lane, previous).then(
      () => {
        this.residency.release(failed);
        if (this.disposing) return;
        lane.moveTo("ready");
        this.settleReservations(lane, false);
        this.pump();
      },
      (backError: unknown) => this.fail(lane, backError as Error, [previous, failed]),
    );
    lane.pending = this.guarded(lane, restored);
    this.pump();
    return lane.pending;
  }

  /**
   * The lane's operation with its reactions; a throw inside a reaction (a bug, or an event handler's) is
   * reported instead of becoming an unhandled rejection, so `lane.pending` never rejects.
   */
  private guarded(lane: Lane<S>, operation: Promise<void>): Promise<void> {
    return operation.catch((error: unknown) => this.report(lane, error as Error));
  }

  private report(lane: Lane<S>, error: Error): void {
    try {
      this.events.onLaneFailed?.(lane, error);
    } catch {
      // The handler's own failure has nowhere else to go.
    }
  }

  /** Drops all KV (it belongs to the old set), then sets the new adapters (~1 ms on a real context). */
  private async swap(lane: Lane<S>, binding: LaneBinding): Promise<void> {
    for (const sequence of lane.sequences) await sequence.clearHistory();
    await lane.setLoras(binding.loras);
  }

  /**
   * Retires a lane whose open or swap failed: its first waiter gets the error (so repeated failures always
   * make progress), the others are re-queued, and its context is freed before its capacity is.
   */
  private async fail(lane: Lane<S>, error: Error, bindings: readonly LaneBinding[]): Promise<void> {
    lane.moveTo("failed");
    const [first, ...rest] = lane.reservations.splice(0);
    first?.reject(error);
    this.requeue(rest);
    this.report(lane, error);
    await this.freeContext(lane, bindings);
    lane.moveTo("disposed");
    this.pump();
  }

  /** Frees a lane's context (if any), then its adapter references, then its place among the lanes. */
  private async freeContext(lane: Lane<S>, bindings: readonly LaneBinding[]): Promise<void> {
    try {
      await lane.detach()?.dispose();
    } catch (error) {
      this.report(lane, error as Error);
    }
    // Only now: releasing first could evict a file the context still has set (a use-after-free).
    for (const binding of bindings) this.residency.release(binding);
    const at = this.lanes.indexOf(lane);
    if (at !== -1) this.lanes.splice(at, 1);
  }
}
