import os from "node:os";
import path from "node:path";
import type { ChatWrapper, Llama, LlamaGrammar, LlamaModel } from "node-llama-cpp";
import { readGgufFile } from "../gguf/gguf-reader.js";
import { computeBaseFingerprint, type BaseFingerprint } from "../lora/base-fingerprint.js";
import { AdapterSetCompiler } from "./adapters/adapter-set-compiler.js";
import type { AdapterRegistry } from "./adapters/adapter-registry.js";
import type { CompiledCache } from "./adapters/compiled-cache.js";
import type { GgufFile } from "../gguf/gguf-types.js";
import { resolveChatFormat } from "./chat-prompt.js";
import type { OutputConstraint } from "./generation-types.js";
import type { Logger } from "../util/logger.js";
import type { ResolvedAdapterSet } from "./adapters/adapter-set-compiler.js";
import { BASE_BINDING } from "./lanes/lane-binding.js";
import { LaneScheduler, type LaneEvents, type SequenceLease } from "./lanes/lane-scheduler.js";
import type { FlashAttentionSetting } from "./lanes/llama-lane-context.js";
import { MergedLanes, type MergedLanesOptions } from "./lanes/merged-lanes.js";
import type { ThreadPoolMode } from "./thread-pool.js";
import type { Token } from "node-llama-cpp";

export interface ModelSpec {
  /** The id clients send as `model`. */
  readonly id: string;
  readonly path: string;
}

export interface ServedModelOptions {
  readonly gpuLayers: "auto" | "max" | number;
  readonly threads: number;
  readonly contextSize: number;
  /** Sequences per lane (batched together). */
  readonly parallel: number;
  /** Lanes (contexts) at most; "auto" = what fits a quarter of free memory, 1..8. */
  readonly maxLanes: number | "auto";
  readonly maxQueue: number;
  readonly maxAdapters: number;
  readonly agingMs: number;
  /** How long a decode may wait for every generating sequence of a lane to queue its token (ms; 0 = off). */
  readonly batchWaitMs?: number;
  /** The engine's thread-pool mode and polling level; absent = no pool attached (src/engine/thread-pool.ts). */
  readonly threadPool?: { readonly mode: ThreadPoolMode; readonly poll: number };
  /** Flash attention in the lanes' contexts (default off, node-llama-cpp's; `serve` defaults to auto). */
  readonly flashAttention?: FlashAttentionSetting;
  readonly chatTemplate: string | undefined;
  /** Where compiled adapter sets are cached. */
  readonly compiledAdaptersDir: string;
  /** The shared, budgeted cache of compiled files (one per adapters dir); default: a private one. */
  readonly compiledCache?: CompiledCache;
  /** Merged-weight lanes for hot adapter sets (lanes/merged-lanes.ts; needs `compiledCache`); absent = off. */
  readonly mergedLanes?: MergedLanesOptions & { readonly logger: Logger };
}

/** A sequence admitted for a request, the model it runs on and what to release after the lease. */
export interface Admission {
  readonly lease: SequenceLease;
  /** The base model, or the merged model of the request's set when it runs on a merged lane. */
  readonly model: LlamaModel;
  /** Unpins the compiled adapter file (call after the lease is back: the lane may load it until then). */
  readonly unpin: () => void;
}

/** One loaded GGUF model with its lanes and adapter compiler. `dispose()` frees everything; idempotent. */
export class ServedModel {
  private disposed = false;
  private jsonGrammar: Promise<LlamaGrammar> | undefined;

  private constructor(
    readonly spec: ModelSpec,
    readonly model: LlamaModel,
    readonly lanes: LaneScheduler,
    readonly adapters: AdapterSetCompiler,
    readonly fingerprint: BaseFingerprint,
    readonly chatFormat: ChatWrapper,
    readonly createdAt: number,
    private readonly llama: Llama,
    /** The GGUF header (adapters are validated against its tensor names and shapes). */
    readonly header: GgufFile,
    /** Merged-weight lanes of hot adapter sets, when on and the base's weights can be merged. */
    readonly mergedLanes: MergedLanes | undefined,
  ) {}

  static async load(
    llama: Llama,
    spec: ModelSpec,
    options: ServedModelOptions,
    registry: AdapterRegistry,
    events: LaneEvents = {},
  ): Promise<ServedModel> {
    const header = await readGgufFile(spec.path);
    const architecture = header.metadata.get("general.architecture")?.value;
    const fingerprint = computeBaseFingerprint(String(architecture ?? "unknown"), header.tensors);
    const model = await llama.loadModel({ modelPath: spec.path, gpuLayers: options.gpuLayers });
    try {
      const contextSize = Math.min(options.contextSize, model.trainContextSize);
      const maxLanes = options.maxLanes === "auto" ? await autoMaxLanes(model, contextSize, options.parallel) : options.maxLanes;
      const laneOptions = {
        sequences: options.parallel,
        contextSize,
        threads: options.threads,
        maxLanes,
        maxQueue: options.maxQueue,
        agingMs: options.agingMs,
        maxAdapters: options.maxAdapters,
        batchWaitMs: options.batchWaitMs,
        ...(options.threadPool ? { threadPool: options.threadPool } : {}),
        ...(options.flashAttention ? { flashAttention: options.flashAttention } : {}),
      };
      const lanes = LaneScheduler.forModel(model, laneOptions, events);
      await lanes.start(BASE_BINDING);
      const compiler = new AdapterSetCompiler(registry, header, fingerprint, options.compiledAdaptersDir, options.compiledCache);
      const chatFormat = resolveChatFormat(model, options.chatTemplate);
      const merged = options.mergedLanes;
      const mergedLanes =
        merged && merged.budgetBytes > 0 && options.compiledCache
          ? MergedLanes.create(
              {
                llama,
                basePath: spec.path,
                baseHeader: header,
                cacheDir: fingerprint.sha256.slice(0, 16),
                registry,
                cache: options.compiledCache,
                laneOptions,
                gpuLayers: options.gpuLayers,
                laneEvents: events,
                logger: merged.logger,
                modelId: spec.id,
              },
              merged,
            )
          : undefined;
      return new ServedModel(
        spec,
        model,
        lanes,
        compiler,
        fingerprint,
        chatFormat,
        Math.floor(Date.now() / 1000),
        llama,
        header,
        mergedLanes,
      );
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  /**
   * A sequence for a request on `set`: on the set's merged lane when one is loaded and has a free sequence,
   * else on a lane bound to the set's compiled LoRA (compiled and pinned here). Every admission counts
   * towards the merged lanes' traffic window.
   */
  async admit(set: ResolvedAdapterSet, promptTokens: readonly Token[], signal: AbortSignal): Promise<Admission> {
    this.mergedLanes?.record(set);
    const merged = this.mergedLanes?.route(set);
    if (merged) {
      const lease = await merged.scheduler.acquire(BASE_BINDING, promptTokens, signal);
      return { lease, model: merged.model, unpin: () => undefined };
    }
    const { binding, release: unpin } = await this.adapters.bind(set);
    try {
      const lease = await this.lanes.acquire(binding, promptTokens, signal);
      return { lease, model: this.model, unpin };
    } catch (error) {
      unpin();
      throw error;
    }
  }

  /** Sequences generating on this model's lanes, merged lanes included. */
  get busySequences(): number {
    return this.lanes.stats.busySequences + (this.mergedLanes?.busySequences ?? 0);
  }

  /** Grammar for constrained output; the generic JSON grammar is built once and shared. */
  async grammarFor(output: OutputConstraint): Promise<LlamaGrammar | undefined> {
    if (output.kind === "text") return undefined;
    if (output.kind === "json") return (this.jsonGrammar ??= this.llama.getGrammarFor("json"));
    if (output.kind === "gbnf") return this.llama.createGrammar({ grammar: output.grammar });
    return this.llama.createGrammarForJsonSchema(output.schema as never);
  }

  get contextSize(): number {
    return this.lanes.contextSize;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.mergedLanes?.dispose();
    await this.lanes.dispose();
    await this.model.dispose();
  }
}

/** As many lanes as fit a quarter of the free memory (each lane is a context with its own KV cache), 1 to 8. */
async function autoMaxLanes(model: LlamaModel, contextSize: number, sequences: number): Promise<number> {
  try {
    const estimate = await model.fileInsights.estimateContextResourceRequirementsV2({
      contextSize,
      sequences,
      modelGpuLayers: model.gpuLayers,
    });
    const perLane = Math.max(estimate.cpuRam, estimate.gpuVram, 1);
    return Math.max(1, Math.min(8, Math.floor((os.freemem() * 0.25) / perLane)));
  } catch {
    return 4;
  }
}

/** `name=path` or a bare path (id = file name without `.gguf`). */
export function parseModelSpec(value: string): ModelSpec {
  const eq = value.indexOf("=");
  if (eq > 0 && !value.slice(0, eq).includes(path.sep)) {
    return { id: value.slice(0, eq), path: value.slice(eq + 1) };
  }
  return { id: path.basename(value).replace(/\.gguf$/i, ""), path: value };
}
