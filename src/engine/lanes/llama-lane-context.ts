import type { LlamaContext, LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import {
  observeDecodes,
  queuedDecodeSequences,
  serializeSampling,
  setContextLoras,
  unloadLora,
  type LoraApplication,
} from "../node-llama-internals.js";
import { type AttachedThreadPool, attachThreadPool, governContextThreads, type ThreadPoolMode } from "../thread-pool.js";
import type { LaneBinding } from "./lane-binding.js";
import type { DecodeStats, LaneContext, LaneEngine } from "./lane-context.js";

export interface LaneContextOptions {
  readonly sequences: number;
  readonly contextSize: number;
  readonly threads: number;
  /**
   * How long a batch may wait for every generating sequence of the lane to queue its next token (ms);
   * 0 = node-llama-cpp's own schedule (the next event-loop cycle). Default 1.
   */
  readonly batchWaitMs?: number;
  /** The engine's thread-pool mode and polling level (src/engine/thread-pool.ts); absent = none attached. */
  readonly threadPool?: { readonly mode: ThreadPoolMode; readonly poll: number };
  /** Flash attention: `auto` lets llama.cpp enable it where the backend supports it. Default off (node-llama-cpp's). */
  readonly flashAttention?: FlashAttentionSetting;
}

/** The `--flash-attention` setting. */
export type FlashAttentionSetting = "auto" | "on" | "off";

/** node-llama-cpp's `flashAttention` context option for a setting: `auto` as it is, on/off as booleans. */
export function flashAttentionOption(setting: FlashAttentionSetting | undefined): "auto" | boolean {
  return setting === "auto" ? "auto" : setting === "on";
}

const DEFAULT_BATCH_WAIT_MS = 1;

/** Lanes on node-llama-cpp: one LlamaContext per lane, its adapters swapped in place. */
export function llamaLaneEngine(
  model: LlamaModel,
  options: LaneContextOptions,
  onDecode?: (tokens: number, sequences: number) => void,
): LaneEngine<LlamaContextSequence> {
  const open = new Set<LlamaContext>();
  const totals = { decodes: 0, tokens: 0, sequences: 0 };
  const recordDecode = (tokens: number, sequences: number) => {
    totals.decodes++;
    totals.tokens += tokens;
    totals.sequences += sequences;
    onDecode?.(tokens, sequences);
  };
  return {
    async openContext(binding: LaneBinding): Promise<LaneContext<LlamaContextSequence>> {
      const gate = new FullBatchGate(options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS);
      const { context, pool } = await createBoundContext(model, binding, options, gate, recordDecode);
      open.add(context);
      const sequences = Array.from({ length: options.sequences }, () => context.getSequence());
      return {
        contextSize: context.contextSize,
        sequences,
        setLoras: (loras: readonly LoraApplication[]) => setContextLoras(context, loras),
        setActiveSequences: (count: number) => {
          gate.active = count;
        },
        async dispose() {
          open.delete(context);
          gate.context = undefined;
          await context.dispose();
          pool?.free();
        },
      };
    },
    async unloadAdapter(filePath: string): Promise<void> {
      await unloadLora(model, [...open], filePath);
    },
    decodeStats: (): DecodeStats => ({ ...totals }),
  };
}

/**
 * A batch dispatch schedule that waits, up to `waitMs`, until every sequence of the lane that is leased to a
 * request has queued its next decode. node-llama-cpp's default ("next cycle") fires as soon as one cycle has
 * passed, often before the other sequences' sampling round trips have come back, so a 4-sequence lane
 * decoded about 3 tokens per call (issue 11). Waiting costs at most `waitMs` per token, and only while a
 * leased sequence is not generating (e.g. its client is slow to read).
 */
class FullBatchGate {
  context: LlamaContext | undefined;
  /** Sequences leased to requests (set by the scheduler). */
  active = 0;

  constructor(private readonly waitMs: number) {}

  readonly schedule = (dispatch: () => void): void => {
    const deadline = performance.now() + this.waitMs;
    const check = () => {
      if (this.full() || performance.now() >= deadline) dispatch();
      else setImmediate(check);
    };
    setImmediate(check);
  };

  private full(): boolean {
    if (!this.context) return true;
    try {
      return queuedDecodeSequences(this.context) >= this.active;
    } catch {
      return true; // checked when the context was created; never stall a batch on it
    }
  }
}

async function createBoundContext(
  model: LlamaModel,
  binding: LaneBinding,
  options: LaneContextOptions,
  gate: FullBatchGate,
  onDecode: (tokens: number, sequences: number) => void,
): Promise<{ context: LlamaContext; pool: AttachedThreadPool | undefined }> {
  const waitForFullBatches = (options.batchWaitMs ?? DEFAULT_BATCH_WAIT_MS) > 0;
  const context = await model.createContext({
    sequences: options.sequences,
    contextSize: options.contextSize,
    threads: options.threads,
    batchSize: Math.min(512, options.contextSize),
    flashAttention: flashAttentionOption(options.flashAttention),
    ...(waitForFullBatches ? { batching: { dispatchSchedule: gate.schedule } } : {}),
  });
  let pool: AttachedThreadPool | undefined;
  try {
    if (options.threadPool) pool = attachThreadPool(context, options.threadPool.mode, options.threads, options.threadPool.poll);
    if (options.threads > 1) governContextThreads(context, options.threads, pool);
    serializeSampling(context);
    observeDecodes(context, onDecode);
    if (waitForFullBatches) {
      queuedDecodeSequences(context); // throws now, not inside a schedule, if the internals changed
      gate.context = context;
    }
    if (binding.loras.length > 0) await setContextLoras(context, binding.loras);
  } catch (error) {
    await context.dispose();
    pool?.free();
    throw error;
  }
  return { context, pool };
}
