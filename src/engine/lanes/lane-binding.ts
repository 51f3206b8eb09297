import type { LoraApplication } from "../node-llama-internals.js";

/**
 * What a lane's context has applied: one adapter set with its weights, identified by `key`. KV caches are
 * only valid under the binding they were built with, so `key` is part of every cache's identity.
 */
export interface LaneBinding {
  /** Canonical identity: sorted member names, content hashes and weights; "" = base model. */
  readonly key: string;
  /** Human label for logs and metrics, e.g. "math*0.7+safety". */
  readonly label: string;
  /** Adapter files to apply (compiled, validated) with their scales. */
  readonly loras: readonly LoraApplication[];
}

export const BASE_BINDING: LaneBinding = { key: "", label: "", loras: [] };
