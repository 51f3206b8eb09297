import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { QueueFullError, RequestAbortedError } from "./engine-errors.js";

export interface SequenceLease {
  readonly sequence: LlamaContextSequence;
  /** Returns the sequence to the pool; idempotent. */
  release(): void;
}

interface Waiter {
  readonly promptTokens: readonly Token[];
  readonly resolve: (lease: SequenceLease) => void;
  readonly reject: (error: Error) => void;
}

/**
 * Hands out the sequences of one context to requests, FIFO, with a bounded wait queue. A free sequence that
 * already holds the longest prefix of the new prompt is preferred, so its KV cache is reused.
 */
export class SequencePool {
  private readonly free: LlamaContextSequence[];
  private readonly waiters: Waiter[] = [];

  constructor(
    sequences: readonly LlamaContextSequence[],
    private readonly maxQueue: number,
  ) {
    this.free = [...sequences];
    this.size = sequences.length;
  }

  readonly size: number;

  get busyCount(): number {
    return this.size - this.free.length;
  }

  get queuedCount(): number {
    return this.waiters.length;
  }

  acquire(promptTokens: readonly Token[], signal: AbortSignal): Promise<SequenceLease> {
    if (signal.aborted) return Promise.reject(new RequestAbortedError());
    if (this.free.length > 0 && this.waiters.length === 0) return Promise.resolve(this.lease(this.takeBest(promptTokens)));
    if (this.waiters.length >= this.maxQueue) return Promise.reject(new QueueFullError(1));
    return new Promise<SequenceLease>((resolve, reject) => {
      const waiter: Waiter = { promptTokens, resolve, reject };
      this.waiters.push(waiter);
      signal.addEventListener(
        "abort",
        () => {
          const index = this.waiters.indexOf(waiter);
          if (index !== -1) {
            this.waiters.splice(index, 1);
            reject(new RequestAbortedError());
          }
        },
        { once: true },
      );
    });
  }

  private lease(sequence: LlamaContextSequence): SequenceLease {
    let released = false;
    return {
      sequence,
      release: () => {
        if (released) return;
        released = true;
        this.free.push(sequence);
        this.dispatch();
      },
    };
  }

  private dispatch(): void {
    while (this.free.length > 0 && this.waiters.length > 0) {
      const waiter = this.waiters.shift()!;
      waiter.resolve(this.lease(this.takeBest(waiter.promptTokens)));
    }
  }

  private takeBest(promptTokens: readonly Token[]): LlamaContextSequence {
    let bestIndex = 0;
    let bestShared = -1;
    this.free.forEach((sequence, index) => {
      const shared = sharedPrefixLength(sequence.contextTokens, promptTokens);
      if (shared > bestShared) {
        bestShared = shared;
        bestIndex = index;
      }
    });
    return this.free.splice(bestIndex, 1)[0]!;
  }

  /** Rejects everyone still waiting (shutdown). */
  rejectWaiting(error: Error): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }
}

function sharedPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const max = Math.min(a.length, b.length);
  let i = 0;
  while (i < max && a[i] === b[i]) i++;
  return i;
}
