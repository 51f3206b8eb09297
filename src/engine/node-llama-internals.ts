import { LlamaContext, type LlamaEmbeddingContext, type LlamaModel } from "node-llama-cpp";

/**
 * The one place that touches node-llama-cpp's untyped internals (pinned at 3.21.1; see docs/background.md §4):
 * swapping a context's adapter set in place, freeing an adapter, and serialising token sampling. Each
 * accessor checks at run time that the shape is what we expect, so an upgrade that changes them fails
 * loudly instead of corrupting memory.
 */

export interface LoraApplication {
  readonly filePath: string;
  readonly scale: number;
}

interface NativeLora {
  usages: number;
  readonly filePath: string;
  readonly disposed: boolean;
  dispose(): Promise<void>;
}

interface ContextInternals {
  _ctx: NativeContext;
  _setLoras(loras: Array<{ filePath: string; scale?: number }>): Promise<void>;
  _loraAdapters: Set<NativeLora>;
}

interface NativeContext {
  setLoras(loras: NativeLora[], scales: number[]): void;
}

interface ModelInternals {
  _loraAdapters: Map<string, NativeLora>;
}

function contextInternals(context: LlamaContext): ContextInternals {
  const internals = context as unknown as Partial<ContextInternals>;
  if (typeof internals._setLoras !== "function" || !(internals._loraAdapters instanceof Set) || !internals._ctx) {
    throw new Error("node-llama-cpp internals changed: LlamaContext._setLoras/_loraAdapters missing (expected 3.21.1)");
  }
  return internals as ContextInternals;
}

function modelInternals(model: LlamaModel): ModelInternals {
  const internals = model as unknown as Partial<ModelInternals>;
  if (!(internals._loraAdapters instanceof Map)) {
    throw new Error("node-llama-cpp internals changed: LlamaModel._loraAdapters missing (expected 3.21.1)");
  }
  return internals as ModelInternals;
}

/** Replaces the whole adapter set of a context (empty = base model). Loads files not yet loaded. */
export async function setContextLoras(context: LlamaContext, loras: readonly LoraApplication[]): Promise<void> {
  await contextInternals(context)._setLoras(loras.map((l) => ({ filePath: l.filePath, scale: l.scale })));
}

/**
 * Frees a loaded adapter file. The caller guarantees no context has it set any more: disposing one still
 * attached to a context is a use-after-free (seen: SIGSEGV). node-llama-cpp never decrements `usages`, so
 * we drop our references from every context and the model's map ourselves.
 */
export async function unloadLora(model: LlamaModel, contexts: readonly LlamaContext[], filePath: string): Promise<boolean> {
  const loaded = modelInternals(model)._loraAdapters;
  const lora = findLoaded(loaded, filePath);
  if (!lora) return false;
  for (const context of contexts) contextInternals(context)._loraAdapters.delete(lora);
  loaded.delete(lora.filePath);
  for (const [key, value] of loaded) if (value === lora) loaded.delete(key);
  if (!lora.disposed) await lora.dispose();
  return true;
}

/** Number of adapter files currently loaded for the model. */
export function loadedLoraCount(model: LlamaModel): number {
  return modelInternals(model)._loraAdapters.size;
}

function findLoaded(loaded: Map<string, NativeLora>, filePath: string): NativeLora | undefined {
  const direct = loaded.get(filePath);
  if (direct) return direct;
  for (const lora of loaded.values()) if (lora.filePath === filePath) return lora;
  return undefined;
}

const serialized = new WeakSet<object>();

/**
 * Makes the context sample one token at a time. node-llama-cpp samples the sequences of a batch in parallel
 * worker threads, but llama.cpp reorders a batch's output rows lazily, on first logits access, without a
 * lock (llama_context::output_reorder): two samplers racing there read each other's logits. We saw exactly
 * that — two requests in one batch swapping their next tokens — in the no-cross-talk test. Sampling is
 * cheap next to decoding, so a per-context queue costs little.
 */
export function serializeSampling(context: LlamaContext): void {
  const native = contextInternals(context)._ctx;
  if (serialized.has(native)) return;
  const { original, shadow } = nativeMethods(context, ["sampleToken"] as const);
  const sample = original.sampleToken;
  let queue: Promise<unknown> = Promise.resolve();
  // Results are handed back together once every queued sample is done (the samples of one batch are all
  // queued before the first finishes). Handing them back one by one let the first sequences queue their next
  // decode while the last was still sampling, and node-llama-cpp's dispatch loop then decoded without it:
  // a 4-sequence lane decoded 3 tokens per batch, one sequence always a batch behind (issue 11).
  let outstanding = 0;
  let held: Array<() => void> = [];
  const hold = (settle: () => void) => {
    held.push(settle);
    if (--outstanding > 0) return;
    const ready = held;
    held = [];
    for (const release of ready) release();
  };
  shadow("sampleToken", (...args: unknown[]) => {
    outstanding++;
    const result = queue.then(() => sample(...args));
    queue = result.catch(() => undefined);
    return new Promise((resolve, reject) => {
      result.then(
        (value) => hold(() => resolve(value)),
        (error: unknown) => hold(() => reject(error)),
      );
    });
  });
  serialized.add(native);
}

/**
 * The generation context inside an embedding context, so that adapters can be set on it like on a lane's:
 * node-llama-cpp's embedding context has no adapter option, but computes on an ordinary context.
 */
export function embeddingContextInternals(embedding: LlamaEmbeddingContext): LlamaContext {
  const inner = (embedding as unknown as { _llamaContext?: unknown })._llamaContext;
  if (!(inner instanceof LlamaContext)) {
    throw new Error("node-llama-cpp internals changed: LlamaEmbeddingContext._llamaContext missing (expected 3.21.1)");
  }
  return inner;
}

/**
 * Sequences of the context that have a decode queued for its next batch. node-llama-cpp dispatches a batch
 * on its own schedule; a custom schedule reads this to wait until every generating sequence has queued.
 */
export function queuedDecodeSequences(context: LlamaContext): number {
  const ids = (context as unknown as { _queuedDecodeSequenceIds?: unknown })._queuedDecodeSequenceIds;
  if (!(ids instanceof Set)) {
    throw new Error("node-llama-cpp internals changed: LlamaContext._queuedDecodeSequenceIds missing (expected 3.21.1)");
  }
  return ids.size;
}

type NativeMethod = (...args: never[]) => unknown;

/**
 * The addon methods `names` of a context's native object, bound to it, and `shadow` to replace one for this
 * object only (the addon's methods are non-writable prototype properties, so the shadow is an own property).
 * Throws when a method is missing, so an upgrade that renames one fails loudly.
 */
function nativeMethods<K extends string>(
  context: LlamaContext,
  names: readonly K[],
): { original: Record<K, (...args: unknown[]) => unknown>; shadow(name: K, value: NativeMethod): void } {
  const native = contextInternals(context)._ctx as unknown as Record<K, unknown>;
  const original = {} as Record<K, (...args: unknown[]) => unknown>;
  for (const name of names) {
    const method = native[name];
    if (typeof method !== "function") {
      throw new Error(`node-llama-cpp internals changed: native ${names.join("/")} missing (expected 3.21.1)`);
    }
    original[name] = method.bind(native) as (...args: unknown[]) => unknown;
  }
  return { original, shadow: (name, value) => Object.defineProperty(native, name, { configurable: true, value }) };
}

/**
 * Calls `onDecode(tokens, sequences)` for every batch the context decodes (tokens in the batch, and how
 * many sequences contributed). Shadows the addon's batch methods like `serializeSampling` does.
 */
export function observeDecodes(context: LlamaContext, onDecode: (tokens: number, sequences: number) => void): void {
  const { original, shadow } = nativeMethods(context, ["initBatch", "addToBatch", "decodeBatch"] as const);
  const { initBatch: init, addToBatch: add, decodeBatch: decode } = original;
  let tokens = 0;
  let sequences = 0;
  shadow("initBatch", (size: number) => {
    tokens = size;
    sequences = 0;
    return init(size);
  });
  shadow("addToBatch", (...args: unknown[]) => {
    sequences++;
    return add(...args);
  });
  shadow("decodeBatch", (...args: unknown[]) => {
    onDecode(tokens, sequences);
    return decode(...args);
  });
}

/**
 * The addon object of a context (node-llama-cpp's `AddonContext`), for native helpers that read the
 * llama_context it wraps (native/threadpool).
 */
export function nativeContextObject(context: LlamaContext): object {
  return contextInternals(context)._ctx as unknown as object;
}

/** How a context's decodes get their threads (see `governDecodeThreads`). */
export interface DecodeThreadGovernor {
  /** The thread count for the decode about to start, of a batch of `batchTokens` tokens. */
  threadsFor(batchTokens: number): number;
  decodeStarted(): void;
  decodeEnded(): void;
}

/**
 * Puts `governor` in charge of each decode's thread count. node-llama-cpp builds a batch (`initBatch(size)`,
 * then `addToBatch` per sequence) and calls the addon's `setThreads(n)` with its own allocation right before
 * every `decodeBatch` of the context (inside the context's dispatch lock, so no compute of this context runs
 * then); the shadow passes `threadsFor(size)` instead, and brackets each decode with `decodeStarted` /
 * `decodeEnded`.
 */
export function governDecodeThreads(context: LlamaContext, governor: DecodeThreadGovernor): void {
  const { original, shadow } = nativeMethods(context, ["initBatch", "setThreads", "decodeBatch"] as const);
  const { initBatch: init, setThreads, decodeBatch: decode } = original;
  let batchTokens = 1;
  shadow("initBatch", (size: number) => {
    batchTokens = size;
    return init(size);
  });
  shadow("setThreads", () => setThreads(governor.threadsFor(batchTokens)));
  shadow("decodeBatch", (...args: unknown[]) => {
    governor.decodeStarted();
    let result: Promise<unknown>;
    try {
      result = decode(...args) as Promise<unknown>;
    } catch (error) {
      governor.decodeEnded();
      throw error;
    }
    return result.finally(() => governor.decodeEnded());
  });
}
