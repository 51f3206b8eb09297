import type { Token } from "node-llama-cpp";
import type { LoraApplication } from "../node-llama-internals.js";
import { sharedPrefixLength } from "../token-prefix.js";
import type { LaneBinding } from "./lane-binding.js";
import type { LaneContext, LaneSequence } from "./lane-context.js";
import { nextLaneState, type LaneState } from "./lane-state.js";
import type { Waiter } from "./waiter.js";

/**
 * One context bound to one adapter set; its sequences batch together because they share that set. The lane
 * keeps its state, its free sequences and the waiters promised a sequence; the scheduler decides the moves.
 */
export class Lane<S extends LaneSequence> {
  private current: LaneState = "opening";
  private context: LaneContext<S> | undefined;
  private free: S[] = [];
  /**
   * Waiters promised a sequence once the lane is ready: for `binding` while opening or binding, for
   * `nextBinding` while draining.
   */
  readonly reservations: Array<Waiter<S>> = [];
  /** While draining: the set the lane is rebound to once its last sequence is back. */
  nextBinding: LaneBinding | undefined;
  /** The open, swap or dispose in progress; it never rejects (its handlers catch). */
  pending: Promise<void> = Promise.resolve();
  lastUsed = performance.now();

  constructor(
    readonly id: number,
    /** Sequences of the context, known before it exists (it is the `--parallel` setting). */
    readonly size: number,
    /** The set the lane serves, or is opening or binding to. */
    public binding: LaneBinding,
  ) {}

  get state(): LaneState {
    return this.current;
  }

  /** Moves to `to`, or throws IllegalLaneTransitionError when the state table does not allow it. */
  moveTo(to: LaneState): void {
    this.current = nextLaneState(this.id, this.current, to);
  }

  /** Called once, when the context is open. */
  attach(context: LaneContext<S>): void {
    if (this.context) throw new Error(`lane ${this.id}: context attached twice`);
    this.context = context;
    this.free = [...context.sequences];
  }

  /** Forgets the context (it is being disposed); returns it, if there was one. */
  detach(): LaneContext<S> | undefined {
    const context = this.context;
    this.context = undefined;
    this.free = [];
    return context;
  }

  get contextSize(): number | undefined {
    return this.context?.contextSize;
  }

  get sequences(): readonly S[] {
    return this.context?.sequences ?? [];
  }

  /** Replaces the context's adapter set; rejects when the lane has no context. */
  async setLoras(loras: readonly LoraApplication[]): Promise<void> {
    if (!this.context) throw new Error(`lane ${this.id} has no context`);
    await this.context.setLoras(loras);
  }

  /** Sequences leased to requests. */
  get busy(): number {
    return this.context ? this.context.sequences.length - this.free.length : 0;
  }

  /** Free sequences a request of the lane's set may take now. */
  get available(): number {
    return this.current === "ready" || this.current === "busy" ? this.free.length : 0;
  }

  /** The set waiters may reserve this lane for, and how many more it can take. */
  get pendingFor(): { key: string; room: number } | undefined {
    if (this.current === "opening" || this.current === "binding") {
      return { key: this.binding.key, room: this.size - this.reservations.length };
    }
    if (this.current === "draining" && this.nextBinding) {
      return { key: this.nextBinding.key, room: this.size - this.reservations.length };
    }
    return undefined;
  }

  /** Nothing running and nothing promised: the only state in which a lane may be rebound. */
  get idle(): boolean {
    return this.current === "ready" && this.busy === 0 && this.reservations.length === 0;
  }

  kvUsage(): { used: number; total: number } {
    if (!this.context) return { used: 0, total: 0 };
    const used = this.context.sequences.reduce((n, s) => n + s.contextTokens.length, 0);
    return { used, total: this.context.sequences.length * this.context.contextSize };
  }

  /** Takes the free sequence whose KV cache shares the longest prefix with the prompt. */
  take(promptTokens: readonly Token[]): S {
    let bestIndex = 0;
    let bestShared = -1;
    this.free.forEach((sequence, index) => {
      const shared = sharedPrefixLength(sequence.contextTokens, promptTokens);
      if (shared > bestShared) {
        bestShared = shared;
        bestIndex = index;
      }
    });
    const sequence = this.free.splice(bestIndex, 1)[0];
    if (!sequence) throw new Error(`lane ${this.id}: no free sequence`);
    this.lastUsed = performance.now();
    this.context?.setActiveSequences?.(this.busy);
    return sequence;
  }

  giveBack(sequence: S): void {
    if (!this.context || this.free.includes(sequence) || !this.context.sequences.includes(sequence)) return;
    this.free.push(sequence);
    this.lastUsed = performance.now();
    this.context.setActiveSequences?.(this.busy);
  }
}
