import type { Token } from "node-llama-cpp";
import type { LoraApplication } from "../node-llama-internals.js";
import type { LaneBinding } from "./lane-binding.js";

/** What the scheduler needs of one sequence of a context. */
export interface LaneSequence {
  /** Tokens whose KV cells the sequence holds (for prefix reuse and KV usage). */
  readonly contextTokens: readonly Token[];
  clearHistory(): Promise<void>;
}

/**
 * One context with a fixed number of sequences that decode together, as the scheduler sees it. The server
 * runs on node-llama-cpp contexts (llama-lane-context.ts); the scheduler's unit tests run on a fake whose
 * operations they settle by hand.
 */
export interface LaneContext<S extends LaneSequence> {
  readonly contextSize: number;
  readonly sequences: readonly S[];
  /** Replaces the whole adapter set (empty = base model). */
  setLoras(loras: readonly LoraApplication[]): Promise<void>;
  /** How many sequences are leased to requests now (a batch may wait for all of them to queue a token). */
  setActiveSequences?(count: number): void;
  dispose(): Promise<void>;
}

/** Batches decoded since start, over all lanes. */
export interface DecodeStats {
  readonly decodes: number;
  /** Tokens in those batches (prompt tokens included). */
  readonly tokens: number;
  /** Sequences that contributed to those batches, summed: sequences / decodes is the batch fill. */
  readonly sequences: number;
}

/** Opens contexts and frees adapter files: everything the scheduler asks of the engine. */
export interface LaneEngine<S extends LaneSequence> {
  /** A new context with `binding`'s adapters applied (rejects, leaving nothing open, on failure). */
  openContext(binding: LaneBinding): Promise<LaneContext<S>>;
  /** Frees a loaded adapter file that no open context has set any more. */
  unloadAdapter(filePath: string): Promise<void>;
  decodeStats?(): DecodeStats;
}
