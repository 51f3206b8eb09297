import type { LlamaContext, LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { serializeSampling, setContextLoras, unloadLora, type LoraApplication } from "../node-llama-internals.js";
import type { LaneBinding } from "./lane-binding.js";
import type { LaneContext, LaneEngine } from "./lane-context.js";

export interface LaneContextOptions {
  readonly sequences: number;
  readonly contextSize: number;
  readonly threads: number;
}

/** Lanes on node-llama-cpp: one LlamaContext per lane, its adapters swapped in place. */
export function llamaLaneEngine(model: LlamaModel, options: LaneContextOptions): LaneEngine<LlamaContextSequence> {
  const open = new Set<LlamaContext>();
  return {
    async openContext(binding: LaneBinding): Promise<LaneContext<LlamaContextSequence>> {
      const context = await createBoundContext(model, binding, options);
      open.add(context);
      const sequences = Array.from({ length: options.sequences }, () => context.getSequence());
      return {
        contextSize: context.contextSize,
        sequences,
        setLoras: (loras: readonly LoraApplication[]) => setContextLoras(context, loras),
        async dispose() {
          open.delete(context);
          await context.dispose();
        },
      };
    },
    async unloadAdapter(filePath: string): Promise<void> {
      await unloadLora(model, [...open], filePath);
    },
  };
}

async function createBoundContext(model: LlamaModel, binding: LaneBinding, options: LaneContextOptions): Promise<LlamaContext> {
  const context = await model.createContext({
    sequences: options.sequences,
    contextSize: options.contextSize,
    threads: options.threads,
    batchSize: Math.min(512, options.contextSize),
  });
  try {
    serializeSampling(context);
    if (binding.loras.length > 0) await setContextLoras(context, binding.loras);
  } catch (error) {
    await context.dispose();
    throw error;
  }
  return context;
}
