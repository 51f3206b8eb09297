import type { LlamaGrammar, Token } from "node-llama-cpp";
import { ContextLengthExceededError, InvalidJsonSchemaError } from "./engine-errors.js";
import { generate } from "./generate.js";
import type { GeneratedPiece, GenerationParams, GenerationResult } from "./generation-types.js";
import type { ServedModel } from "./served-model.js";
import type { ResolvedAdapterSet } from "./adapters/adapter-set-compiler.js";
import type { SequenceLease } from "./lanes/lane-scheduler.js";

export interface GenerationRequest {
  readonly promptTokens: Token[];
  readonly params: GenerationParams;
  readonly stopTokens?: ReadonlySet<Token>;
  /** The adapter set to apply (empty = base model). */
  readonly adapters: ResolvedAdapterSet;
  readonly signal: AbortSignal;
}

/**
 * One admitted request: it holds a sequence until `dispose()` (idempotent), which the HTTP layer calls
 * when the response ends for any reason — completion, error or client disconnect.
 */
export class GenerationJob {
  private readonly abort = new AbortController();
  private disposed = false;

  private constructor(
    private readonly served: ServedModel,
    private readonly lease: SequenceLease,
    private readonly request: GenerationRequest,
    private readonly grammar: LlamaGrammar | undefined,
  ) {
    request.signal.addEventListener("abort", () => this.abort.abort(), { once: true });
  }

  /**
   * Validates, builds the grammar, compiles the adapter set (cached), then waits for a sequence on a lane
   * bound to that set (or throws QueueFullError).
   */
  static async start(served: ServedModel, request: GenerationRequest): Promise<GenerationJob> {
    if (request.promptTokens.length === 0) request.promptTokens.push(...bosOrNothing(served));
    if (request.promptTokens.length >= served.contextSize) {
      throw new ContextLengthExceededError(request.promptTokens.length, served.contextSize);
    }
    const grammar = await served.grammarFor(request.params.output).catch((error: unknown) => {
      throw new InvalidJsonSchemaError((error as Error).message.split("\n")[0] ?? "");
    });
    const binding = await served.adapters.bind(request.adapters);
    const lease = await served.lanes.acquire(binding, request.promptTokens, request.signal);
    return new GenerationJob(served, lease, request, grammar);
  }

  /** Queueing plus lane preparation time, and whether a lane swap was needed. */
  get admission(): { waitMs: number; swapped: boolean; lane: number } {
    return { waitMs: this.lease.waitMs, swapped: this.lease.swapped, lane: this.lease.lane.id };
  }

  pieces(): AsyncGenerator<GeneratedPiece, GenerationResult, void> {
    const stopTokens = new Set<Token>(this.request.stopTokens ?? []);
    return generate({
      model: this.served.model,
      sequence: this.lease.sequence,
      promptTokens: this.request.promptTokens,
      params: this.request.params,
      ...(this.grammar ? { grammar: this.grammar } : {}),
      stopTokens,
      signal: this.abort.signal,
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.abort.abort();
    this.lease.release();
  }
}

function bosOrNothing(served: ServedModel): Token[] {
  const bos = served.model.tokens.bos;
  return bos === null ? [] : [bos];
}
