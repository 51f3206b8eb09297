import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

/**
 * One CPU-only llama.cpp binding per test process (loading it costs ~100 ms and it is meant to be shared).
 * Logs below "error" are silenced: expected load warnings would bury real failures in the output.
 * Contexts created in tests should pass `threads: 1` (see docs/background.md §5).
 */
export function getTestLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  return llamaPromise;
}
