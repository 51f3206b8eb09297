import type { LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
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
 *
 * The sequence goes back to the lane only once the generation has settled: `dispose()` may run while a decode
 * of this sequence is still queued in node-llama-cpp's batch, and handing the sequence on (or letting the lane
 * be rebound) at that moment lets the next request erase KV cells the pending decode is about to extend, which
 * corrupts its output or fails the batch with "inconsistent sequence positions" (issue 10, defect 4).
 */
export class GenerationJob {
  private readonly abort = new AbortController();
  private readonly forwardAbort = () => this.abort.abort();
  private generator: AsyncGenerator<GeneratedPiece, GenerationResult, void> | undefined;
  private disposed = false;

  private constructor(
    /** The model the lease's lane runs (the base, or a merged model of the request's set). */
    private readonly model: LlamaModel,
    private readonly lease: SequenceLease,
    private readonly request: GenerationRequest,
    private readonly grammar: LlamaGrammar | undefined,
    /** Unpins the compiled adapter file (after the lease is back: the lane may load it until then). */
    private readonly unpin: () => void,
  ) {
    // An "abort" event fires once: a signal aborted before we listen would never reach us.
    if (request.signal.aborted) this.abort.abort();
    else request.signal.addEventListener("abort", this.forwardAbort, { once: true });
  }

  /**
   * Validates, builds the grammar, then waits for a sequence on a lane bound to the adapter set (compiled and
   * cached) or on the set's merged lane (ServedModel.admit), or throws QueueFullError.
   */
  static async start(served: ServedModel, request: GenerationRequest): Promise<GenerationJob> {
    if (request.promptTokens.length === 0) request.promptTokens.push(...bosOrNothing(served));
    if (request.promptTokens.length >= served.contextSize) {
      throw new ContextLengthExceededError(request.promptTokens.length, served.contextSize);
    }
    const grammar = await served.grammarFor(request.params.output).catch((error: unknown) => {
      throw new InvalidJsonSchemaError((error as Error).message.split("\n")[0] ?? "");
    });
    const { lease, model, unpin } = await served.admit(request.adapters, request.promptTokens, request.signal);
    return new GenerationJob(model, lease, request, grammar, unpin);
  }

  /** Queueing plus lane preparation time, and whether a lane swap was needed. */
  get admission(): { waitMs: number; swapped: boolean; lane: number } {
    return { waitMs: this.lease.waitMs, swapped: this.lease.swapped, lane: this.lease.lane.id };
  }

  /** The generation; call once. After `dispose()` it ends at its next step. */
  pieces(): AsyncGenerator<GeneratedPiece, GenerationResult, void> {
    if (this.generator) throw new Error("GenerationJob.pieces() called twice");
    const stopTokens = new Set<Token>(this.request.stopTokens ?? []);
    this.generator = generate({
      model: this.model,
      sequence: this.lease.sequence,
      promptTokens: this.request.promptTokens,
      params: this.request.params,
      ...(this.grammar ? { grammar: this.grammar } : {}),
      stopTokens,
      signal: this.abort.signal,
    });
    return this.generator;
  }

  /**
   * Stops the generation and gives the sequence back once it has settled. `return()` on an async generator
   * waits for a step in progress (a pending decode) to finish, then runs its `finally`, which ends
   * node-llama-cpp's evaluation; only then is the sequence free for someone else.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.request.signal.removeEventListener("abort", this.forwardAbort);
    this.abort.abort();
    const release = () => {
      this.lease.release();
      this.unpin();
    };
    if (this.generator) this.generator.return(undefined as never).then(release, release);
    else release();
  }
}

function bosOrNothing(served: ServedModel): Token[] {
  const bos = served.model.tokens.bos;
  return bos === null ? [] : [bos];
}
