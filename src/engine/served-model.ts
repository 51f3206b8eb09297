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
import { BASE_BINDING } from "./lanes/lane-binding.js";
import { LaneScheduler, type LaneEvents } from "./lanes/lane-scheduler.js";

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
  readonly chatTemplate: string | undefined;
  /** Where compiled adapter sets are cached. */
  readonly compiledAdaptersDir: string;
  /** The shared, budgeted cache of compiled files (one per adapters dir); default: a private one. */
  readonly compiledCache?: CompiledCache;
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
      const lanes = LaneScheduler.forModel(
        model,
        {
          sequences: options.parallel,
          contextSize,
          threads: options.threads,
          maxLanes,
          maxQueue: options.maxQueue,
          agingMs: options.agingMs,
          maxAdapters: options.maxAdapters,
          batchWaitMs: options.batchWaitMs,
        },
        events,
      );
      await lanes.start(BASE_BINDING);
      const compiler = new AdapterSetCompiler(registry, header, fingerprint, options.compiledAdaptersDir, options.compiledCache);
      const chatFormat = resolveChatFormat(model, options.chatTemplate);
      return new ServedModel(spec, model, lanes, compiler, fingerprint, chatFormat, Math.floor(Date.now() / 1000), llama, header);
    } catch (error) {
      await model.dispose();
      throw error;
    }
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
