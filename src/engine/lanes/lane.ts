import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { serializeSampling, setContextLoras } from "../node-llama-internals.js";
import { sharedPrefixLength } from "../token-prefix.js";
import type { LaneBinding } from "./lane-binding.js";

export interface LaneContextOptions {
  readonly sequences: number;
  readonly contextSize: number;
  readonly threads: number;
}

/** One context bound to one adapter set; its sequences batch together because they share that set. */
export class Lane {
  private readonly context: LlamaContext;
  private readonly sequences: readonly LlamaContextSequence[];
  private readonly free: LlamaContextSequence[];
  /** Sequences promised to requests that are being admitted while the lane is (re)bound. */
  reserved = 0;
  lastUsed = performance.now();
  preparing = false;

  private constructor(
    readonly id: number,
    context: LlamaContext,
    sequences: number,
    public binding: LaneBinding,
  ) {
    this.context = context;
    this.sequences = Array.from({ length: sequences }, () => context.getSequence());
    this.free = [...this.sequences];
  }

  static async create(id: number, model: LlamaModel, binding: LaneBinding, options: LaneContextOptions): Promise<Lane> {
    return new Lane(id, await createBoundContext(model, binding, options), options.sequences, binding);
  }

  get llamaContext(): LlamaContext {
    return this.context;
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  get size(): number {
    return this.sequences.length;
  }

  get busy(): number {
    return this.sequences.length - this.free.length;
  }

  /** Free sequences not yet promised to anyone. */
  get available(): number {
    return this.preparing ? 0 : this.free.length - this.reserved;
  }

  /** Idle = nothing running and nothing promised: the only state in which a lane may be rebound or freed. */
  get idle(): boolean {
    return this.busy === 0 && this.reserved === 0 && !this.preparing;
  }

  kvUsage(): { used: number; total: number } {
    const used = this.sequences.reduce((n, s) => n + s.contextTokens.length, 0);
    return { used, total: this.sequences.length * this.context.contextSize };
  }

  /** Takes the free sequence whose KV cache shares the longest prefix with the prompt. */
  take(promptTokens: readonly Token[]): LlamaContextSequence {
    let bestIndex = 0;
    let bestShared = -1;
    this.free.forEach((sequence, index) => {
      const shared = sharedPrefixLength(sequence.contextTokens, promptTokens);
      if (shared > bestShared) {
        bestShared = shared;
        bestIndex = index;
      }
    });
    this.lastUsed = performance.now();
    return this.free.splice(bestIndex, 1)[0]!;
  }

  giveBack(sequence: LlamaContextSequence): void {
    this.free.push(sequence);
    this.lastUsed = performance.now();
  }

  /** Swaps the adapter set of an idle lane in place (~1 ms); all KV is dropped (it belongs to the old set). */
  async rebind(binding: LaneBinding): Promise<void> {
    for (const sequence of this.sequences) await sequence.clearHistory();
    await setContextLoras(this.context, binding.loras);
    this.binding = binding;
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
  }
}

async function createBoundContext(model: LlamaModel, binding: LaneBinding, options: LaneContextOptions): Promise<LlamaContext> {
  const context = await model.createContext({
    sequences: options.sequences,
    contextSize: options.contextSize,
    threads: options.threads,
    batchSize: Math.min(512, options.contextSize),
  });
  try {
    serializeSampling(context);
    if (binding.loras.length > 0) await setContextLoras(context, binding.loras);
  } catch (error) {
    await context.dispose();
    throw error;
  }
  return context;
}
