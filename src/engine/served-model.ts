import path from "node:path";
import type { ChatWrapper, Llama, LlamaContext, LlamaGrammar, LlamaModel } from "node-llama-cpp";
import type { OutputConstraint } from "./generation-types.js";
import { resolveChatFormat } from "./chat-prompt.js";
import { SequencePool } from "./sequence-pool.js";

export interface ModelSpec {
  /** The id clients send as `model`. */
  readonly id: string;
  readonly path: string;
}

export interface ServedModelOptions {
  readonly gpuLayers: "auto" | "max" | number;
  readonly threads: number;
  readonly contextSize: number;
  readonly parallel: number;
  readonly maxQueue: number;
  readonly chatTemplate: string | undefined;
}

/** One loaded GGUF model with its context and sequences. `dispose()` frees everything; idempotent. */
export class ServedModel {
  private disposed = false;
  private jsonGrammar: Promise<LlamaGrammar> | undefined;

  private constructor(
    readonly spec: ModelSpec,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly pool: SequencePool,
    readonly chatFormat: ChatWrapper,
    readonly createdAt: number,
    private readonly llama: Llama,
  ) {}

  static async load(llama: Llama, spec: ModelSpec, options: ServedModelOptions): Promise<ServedModel> {
    const model = await llama.loadModel({ modelPath: spec.path, gpuLayers: options.gpuLayers });
    try {
      const contextSize = Math.min(options.contextSize, model.trainContextSize);
      const context = await model.createContext({
        sequences: options.parallel,
        contextSize,
        threads: options.threads,
        batchSize: Math.min(512, contextSize),
      });
      const sequences = Array.from({ length: options.parallel }, () => context.getSequence());
      const pool = new SequencePool(sequences, options.maxQueue);
      const chatFormat = resolveChatFormat(model, options.chatTemplate);
      return new ServedModel(spec, model, context, pool, chatFormat, Math.floor(Date.now() / 1000), llama);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  /** Grammar for constrained output; the generic JSON grammar is built once and shared. */
  async grammarFor(output: OutputConstraint): Promise<LlamaGrammar | undefined> {
    if (output.kind === "text") return undefined;
    if (output.kind === "json") return (this.jsonGrammar ??= this.llama.getGrammarFor("json"));
    return this.llama.createGrammarForJsonSchema(output.schema as never);
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.context.dispose();
    await this.model.dispose();
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
