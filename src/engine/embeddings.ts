import type { LlamaEmbeddingContext, Token } from "node-llama-cpp";
import type { ResolvedAdapterSet } from "./adapters/adapter-set-compiler.js";
import { ContextLengthExceededError } from "./engine-errors.js";
import { BASE_BINDING, type LaneBinding } from "./lanes/lane-binding.js";
import { embeddingContextInternals, setContextLoras } from "./node-llama-internals.js";
import type { ServedModel } from "./served-model.js";

/** One input to embed: text (tokenized as node-llama-cpp does for embeddings) or token ids as given. */
export type EmbeddingInput = string | readonly Token[];

export interface EmbeddingResult {
  /** One vector per input, in order: node-llama-cpp's own embedding of it (not normalised). */
  readonly vectors: number[][];
  /** Tokens evaluated over all inputs (with the BOS/EOS node-llama-cpp adds). */
  readonly promptTokens: number;
}

/**
 * Embeddings of a served model under an adapter set. Each model gets one embedding context on first use;
 * requests take turns on it (an embedding is one forward pass, so a queue costs little next to a second
 * context's memory). The adapter set is applied to that context like to a lane's, and kept until a request
 * needs another one. While a set is applied its files are retained in the lanes' residency count, so the
 * LRU never frees an adapter file this context still has set (that would be a use-after-free in llama.cpp).
 */
export class ModelEmbeddings {
  private context: Promise<LlamaEmbeddingContext> | undefined;
  private binding: LaneBinding = BASE_BINDING;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly served: ServedModel) {}

  /** Embeds each input under the adapter set; throws ContextLengthExceededError when one does not fit. */
  async embed(inputs: readonly EmbeddingInput[], adapters: ResolvedAdapterSet): Promise<EmbeddingResult> {
    const { binding, release } = await this.served.adapters.bind(adapters);
    const run = this.turn.then(() => this.embedInTurn(inputs, binding));
    this.turn = run.catch(() => undefined);
    // Once applied, the file is retained by the residency count for as long as this context has it set.
    return run.finally(release);
  }

  private async embedInTurn(inputs: readonly EmbeddingInput[], binding: LaneBinding): Promise<EmbeddingResult> {
    const context = await (this.context ??= this.served.model.createEmbeddingContext({
      contextSize: this.served.contextSize,
      batchSize: Math.min(512, this.served.contextSize),
      threads: this.served.model.llama.cpuMathCores,
    }));
    const lengths = inputs.map((input) => context.calculateInputLength(input as string | Token[]));
    const longest = Math.max(...lengths);
    if (longest >= this.served.contextSize) throw new ContextLengthExceededError(longest, this.served.contextSize);
    await this.apply(context, binding);
    const vectors: number[][] = [];
    for (const input of inputs) vectors.push([...(await context.getEmbeddingFor(input as string | Token[])).vector]);
    return { vectors, promptTokens: lengths.reduce((sum, n) => sum + n, 0) };
  }

  /** Sets `binding` on the context: retain the new files first, release the old ones once unset. */
  private async apply(context: LlamaEmbeddingContext, binding: LaneBinding): Promise<void> {
    if (binding.key === this.binding.key) return;
    const residency = this.served.lanes.residency;
    residency.retain(binding);
    try {
      await setContextLoras(embeddingContextInternals(context), binding.loras);
    } catch (error) {
      // The context may hold part of the new set: fall back to the base model before letting go of it.
      await setContextLoras(embeddingContextInternals(context), []).catch(() => undefined);
      residency.release(binding);
      residency.release(this.binding);
      this.binding = BASE_BINDING;
      throw error;
    }
    residency.release(this.binding);
    this.binding = binding;
  }
}

const perModel = new WeakMap<ServedModel, ModelEmbeddings>();

/** The embeddings of a served model (created on first use, freed with the model). */
export function embeddingsOf(served: ServedModel): ModelEmbeddings {
  let embeddings = perModel.get(served);
  if (!embeddings) {
    embeddings = new ModelEmbeddings(served);
    perModel.set(served, embeddings);
  }
  return embeddings;
}
