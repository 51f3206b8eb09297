import type { Token } from "node-llama-cpp";
import type { Lane } from "./lane.js";
import type { LaneBinding } from "./lane-binding.js";
import type { LaneSequence } from "./lane-context.js";

export interface SequenceLease<S extends LaneSequence> {
  readonly sequence: S;
  readonly lane: Lane<S>;
  /** Time spent waiting for a lane, creating one or swapping its adapters (ms). */
  readonly waitMs: number;
  /** Whether serving this request required a lane swap (rebind). */
  readonly swapped: boolean;
  /** Returns the sequence; idempotent. Call it only once the sequence's generation has settled. */
  release(): void;
}

/** A request waiting for a sequence: in the scheduler's queue, or reserved on one lane. */
export interface Waiter<S extends LaneSequence> {
  readonly binding: LaneBinding;
  readonly promptTokens: readonly Token[];
  readonly enqueuedAt: number;
  /** Settles the request's promise once; later calls do nothing. */
  resolve(lease: SequenceLease<S>): void;
  reject(error: Error): void;
}
