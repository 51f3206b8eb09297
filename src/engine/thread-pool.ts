import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { LlamaContext } from "node-llama-cpp";
import { findPackageRoot } from "../util/package-root.js";
import { governDecodeThreads, nativeContextObject } from "./node-llama-internals.js";

/**
 * How a context's compute threads live between decodes (docs/engine.md):
 * - `persistent`: a ggml thread pool made once per context by our helper (native/threadpool), kept across
 *   computes; its threads poll for work for a while (`--poll`) and then sleep.
 * - `openmp`: the engine build's OpenMP team, which libgomp keeps alive the same way.
 * - `per-compute`: node-llama-cpp's prebuilt binaries as they are: ggml starts and joins threads for every
 *   decode call. With more than one thread that is several times slower than one thread on 2 cores.
 */
export type ThreadPoolMode = "persistent" | "openmp" | "per-compute";

/** `LORI_THREAD_POOL`: `auto` (default) attaches a persistent pool where it can, `off` never does. */
export type ThreadPoolChoice = "auto" | "off";

interface HelperModule {
  ContextThreadPool: new (nativeContext: object, cells: number, threads: number, poll: number) => AttachedThreadPool;
}

type HelperState = { readonly module: HelperModule } | { readonly reason: string };

let helper: HelperState | undefined;

/** Loads native/build/lori-threadpool.node once (built by `npm run build:native`, also run at install). */
function loadHelper(): HelperState {
  if (helper) return helper;
  const root = findPackageRoot();
  const file = root === undefined ? undefined : join(root, "native", "build", "lori-threadpool.node");
  if (file === undefined || !existsSync(file)) {
    helper = { reason: "no thread-pool helper (npm run build:native)" };
    return helper;
  }
  try {
    helper = { module: createRequire(import.meta.url)(file) as HelperModule };
  } catch (error) {
    helper = { reason: `the thread-pool helper did not load: ${(error as Error).message.split("\n")[0]}` };
  }
  return helper;
}

export function threadPoolChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): ThreadPoolChoice {
  return env.LORI_THREAD_POOL === "off" ? "off" : "auto";
}

/** The mode contexts will get on this engine, and why it is not `persistent` when it is not. */
export function threadPoolMode(
  engine: { readonly openmp: boolean; readonly gpu: string },
  choice: ThreadPoolChoice = threadPoolChoiceFromEnv(),
): { readonly mode: ThreadPoolMode; readonly reason?: string } {
  if (engine.openmp) return { mode: "openmp" };
  if (choice === "off") return { mode: "per-compute", reason: "LORI_THREAD_POOL=off" };
  const state = loadHelper();
  return "module" in state ? { mode: "persistent" } : { mode: "per-compute", reason: state.reason };
}

export interface AttachedThreadPool {
  /** Attaches (true) or detaches (false) the pool; only between computes of the context. */
  use(attached: boolean): void;
  /** Frees the pool; call after the context is disposed (it detaches first if the context still lives). */
  free(): void;
}

/**
 * Gives a context a persistent thread pool of `threads` threads when the engine is `persistent` (one thread
 * needs no pool: ggml then computes on the calling thread). Undefined when nothing was attached.
 */
export function attachThreadPool(
  context: LlamaContext,
  mode: ThreadPoolMode,
  threads: number,
  poll: number,
): AttachedThreadPool | undefined {
  if (mode !== "persistent" || threads <= 1) return undefined;
  const state = loadHelper();
  if (!("module" in state)) return undefined;
  // node-llama-cpp's contextSize is per sequence; the llama_context holds that many cells for each sequence
  const cells = context.contextSize * context.totalSequences;
  return new state.module.ContextThreadPool(nativeContextObject(context), cells, threads, poll);
}

/** Decodes running now, over every governed context of the process. */
let decodesInFlight = 0;

/**
 * The threads of one decode. A batch of one token (one sequence generating) is light: ggml's barriers then cost
 * as much as the second thread saves, and Node's main thread, which handles the previous token meanwhile, needs
 * a core; so it gets at most `cores - 1` threads (1 on 2 cores). Bigger batches (prompts, several sequences)
 * get all `threads`. A decode that starts while others run gets its share, `threads / (running + 1)`.
 * Measured on 2 cores in the server (docs/engine.md): one client 217 tokens/s at 1 thread vs 201 at 2; four
 * clients of one lane 269 at 2 threads vs 227 at 1; four lanes at once 294 at 1 thread each vs 263 shared 2.
 */
export function decodeThreads(threads: number, batchTokens: number, running: number, cores: number): number {
  const cap = batchTokens > 1 ? threads : Math.min(threads, Math.max(1, cores - 1));
  return Math.max(1, Math.floor(cap / (running + 1)));
}

/**
 * Shares the cores between the lanes' contexts, decode by decode (`decodeThreads`), and runs a 1-thread decode
 * with the pool detached, so that no idle pool thread is woken for it. Without this, two lanes at 2 threads
 * each put 4 spinning compute threads on 2 cores, and ggml's barriers then wait for descheduled threads.
 */
export function governContextThreads(
  context: LlamaContext,
  threads: number,
  pool: AttachedThreadPool | undefined,
  cores: number = availableParallelism(),
): void {
  // attachThreadPool leaves the pool attached; the native call (a mutex and two pointer stores) is made only when
  // a decode's choice differs from the previous one's, not for every token
  let attached = pool !== undefined;
  governDecodeThreads(context, {
    threadsFor: (batchTokens) => {
      const share = decodeThreads(threads, batchTokens, decodesInFlight, cores);
      if (pool && attached !== share > 1) {
        attached = share > 1;
        pool.use(attached);
      }
      return share;
    },
    decodeStarted: () => {
      decodesInFlight++;
    },
    decodeEnded: () => {
      decodesInFlight--;
    },
  });
}
