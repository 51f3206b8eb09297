import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { QueueFullError, RequestAbortedError } from "../engine-errors.js";
import { Lane, type LaneContextOptions } from "./lane.js";
import type { LaneBinding } from "./lane-binding.js";
import { LoraResidency } from "./lora-residency.js";

export interface SequenceLease {
  readonly sequence: LlamaContextSequence;
  readonly lane: Lane;
  /** Time spent waiting for a lane, creating one or swapping its adapters (ms). */
  readonly waitMs: number;
  /** Whether serving this request required a lane swap (rebind). */
  readonly swapped: boolean;
  /** Returns the sequence; idempotent. */
  release(): void;
}

export interface LaneSchedulerOptions extends LaneContextOptions {
  readonly maxLanes: number;
  readonly maxQueue: number;
  /** A request waiting longer than this blocks younger ones from overtaking it (no set starves). */
  readonly agingMs: number;
  /** Loaded adapter files kept resident when no lane uses them (LRU beyond). */
  readonly maxAdapters: number;
}

export interface LaneEvents {
  onSwap?(from: LaneBinding, to: LaneBinding, ms: number, lane: Lane): void;
  onLaneCreated?(lane: Lane, ms: number): void;
  onAdapterLoaded?(filePath: string): void;
  onAdapterEvicted?(filePath: string): void;
}

interface Waiter {
  readonly binding: LaneBinding;
  readonly promptTokens: readonly Token[];
  readonly enqueuedAt: number;
  readonly resolve: (lease: SequenceLease) => void;
  readonly reject: (error: Error) => void;
}

/**
 * Routes each request to a lane already bound to its adapter set (same-set requests batch); else opens a
 * lane within `maxLanes`; else rebinds the least-recently-used idle lane; else the request waits, FIFO with
 * aging, in a bounded queue. Busy lanes are never rebound or freed.
 */
export class LaneScheduler {
  private readonly lanes: Lane[] = [];
  private creating = 0;
  private readonly waiters: Waiter[] = [];
  private nextLaneId = 0;
  private disposed = false;
  readonly residency: LoraResidency;

  constructor(
    private readonly model: LlamaModel,
    private readonly options: LaneSchedulerOptions,
    private readonly events: LaneEvents = {},
  ) {
    this.residency = new LoraResidency(model, () => this.lanes.map((l) => l.llamaContext), options.maxAdapters, events);
  }

  /** Opens the first lane on the base model, so the server is ready for plain requests. */
  async start(base: LaneBinding): Promise<void> {
    this.lanes.push(await Lane.create(this.nextLaneId++, this.model, base, this.options));
  }

  get contextSize(): number {
    return this.lanes[0]?.contextSize ?? this.options.contextSize;
  }

  get stats() {
    return {
      lanes: this.lanes.length,
      busyLanes: this.lanes.filter((l) => !l.idle).length,
      busySequences: this.lanes.reduce((n, l) => n + l.busy, 0),
      queued: this.waiters.length,
      maxLanes: this.options.maxLanes,
      bindings: this.lanes.map((l) => ({ lane: l.id, label: l.binding.label, busy: l.busy, size: l.size })),
      waitingLabels: this.waiters.map((w) => w.binding.label),
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

  acquire(binding: LaneBinding, promptTokens: readonly Token[], signal: AbortSignal): Promise<SequenceLease> {
    if (signal.aborted) return Promise.reject(new RequestAbortedError());
    return new Promise<SequenceLease>((resolve, reject) => {
      const waiter: Waiter = { binding, promptTokens, enqueuedAt: performance.now(), resolve, reject };
      this.waiters.push(waiter);
      this.pump();
      const index = this.waiters.indexOf(waiter);
      if (index === -1) return;
      if (this.waiters.length > this.options.maxQueue) {
        this.waiters.splice(index, 1);
        reject(new QueueFullError(1));
        return;
      }
      signal.addEventListener(
        "abort",
        () => {
          const at = this.waiters.indexOf(waiter);
          if (at !== -1) {
            this.waiters.splice(at, 1);
            reject(new RequestAbortedError());
          }
        },
        { once: true },
      );
    });
  }

  /** Serves waiters in order; an aged waiter that cannot be served yet stops younger ones overtaking it. */
  private pump(): void {
    if (this.disposed) return;
    const now = performance.now();
    for (let i = 0; i < this.waiters.length; ) {
      const waiter = this.waiters[i]!;
      if (this.tryServe(waiter)) {
        this.waiters.splice(i, 1);
        continue;
      }
      if (now - waiter.enqueuedAt > this.options.agingMs) break;
      i++;
    }
  }

  private tryServe(waiter: Waiter): boolean {
    const { binding } = waiter;
    const ready = this.lanes.find((l) => l.binding.key === binding.key && l.available > 0);
    if (ready) {
      this.hand(ready, waiter, false);
      return true;
    }
    // A lane is being prepared for this set and will have room: wait for it rather than take another lane.
    const pending = this.lanes.find((l) => l.binding.key === binding.key && l.preparing && l.reserved < l.size);
    if (pending) {
      pending.reserved++;
      this.afterPrepared(pending, waiter);
      return true;
    }
    if (this.lanes.length + this.creating < this.options.maxLanes) {
      this.openLane(waiter);
      return true;
    }
    const idle = this.lanes.filter((l) => l.idle).sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (idle) {
      this.rebindLane(idle, waiter);
      return true;
    }
    return false;
  }

  private hand(lane: Lane, waiter: Waiter, swapped: boolean): void {
    const sequence = lane.take(waiter.promptTokens);
    let released = false;
    waiter.resolve({
      sequence,
      lane,
      swapped,
      waitMs: performance.now() - waiter.enqueuedAt,
      release: () => {
        if (released) return;
        released = true;
        lane.giveBack(sequence);
        this.pump();
      },
    });
  }

  private openLane(waiter: Waiter): void {
    this.creating++;
    const started = performance.now();
    this.residency.retain(waiter.binding);
    Lane.create(this.nextLaneId++, this.model, waiter.binding, this.options).then(
      (lane) => {
        this.creating--;
        this.lanes.push(lane);
        this.events.onLaneCreated?.(lane, performance.now() - started);
        if (this.disposed) return void lane.dispose();
        this.hand(lane, waiter, false);
        this.pump();
      },
      (error: unknown) => {
        this.creating--;
        this.residency.release(waiter.binding);
        waiter.reject(error as Error);
        this.pump();
      },
    );
  }

  private rebindLane(lane: Lane, waiter: Waiter): void {
    const previous = lane.binding;
    const started = performance.now();
    lane.preparing = true;
    lane.binding = waiter.binding;
    this.residency.retain(waiter.binding);
    lane.rebind(waiter.binding).then(
      () => {
        lane.preparing = false;
        this.residency.release(previous);
        this.events.onSwap?.(previous, waiter.binding, performance.now() - started, lane);
        this.hand(lane, waiter, true);
        this.settleReserved(lane);
        this.pump();
      },
      (error: unknown) => {
        // The context may hold a partial set now: bind it back to its previous set before reuse.
        lane.binding = previous;
        this.residency.release(waiter.binding);
        lane.rebind(previous).finally(() => {
          lane.preparing = false;
          this.settleReserved(lane);
          this.pump();
        });
        waiter.reject(error as Error);
      },
    );
  }

  private readonly afterPreparedWaiters = new Map<Lane, Waiter[]>();

  private afterPrepared(lane: Lane, waiter: Waiter): void {
    const list = this.afterPreparedWaiters.get(lane) ?? [];
    list.push(waiter);
    this.afterPreparedWaiters.set(lane, list);
  }

  /** Hands sequences promised while the lane was being prepared; waiters of a failed rebind re-queue. */
  private settleReserved(lane: Lane): void {
    const list = this.afterPreparedWaiters.get(lane) ?? [];
    this.afterPreparedWaiters.delete(lane);
    lane.reserved -= list.length;
    for (const waiter of list) {
      if (lane.binding.key === waiter.binding.key && lane.available > 0) this.hand(lane, waiter, true);
      else this.waiters.unshift(waiter);
    }
  }

  /** Rejects everyone still waiting (shutdown). */
  rejectWaiting(error: Error): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.rejectWaiting(new Error("scheduler disposed"));
    for (const lane of this.lanes.splice(0)) await lane.dispose();
  }
}
