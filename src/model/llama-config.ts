/** Hyper-parameters of a llama-architecture model, named after llama.cpp's GGUF keys. */
export interface LlamaConfig {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  vocabSize: number;
  contextLength: number;
  ropeTheta: number;
  rmsEps: number;
}

/** The part of the config that fixes tensor shapes. */
export type LlamaShape = Pick<LlamaConfig, "nLayer" | "nEmbd" | "nHead" | "nHeadKv" | "nFf" | "vocabSize">;

/** Throws a one-line Error naming the first inconsistent field; returns the config for chaining. */
export function validateLlamaShape<T extends LlamaShape>(shape: T): T {
  for (const field of ["nLayer", "nEmbd", "nHead", "nHeadKv", "nFf", "vocabSize"] as const) {
    const value = shape[field];
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${field} must be a positive integer, got ${value}`);
  }
  if (shape.nEmbd % shape.nHead !== 0) {
    throw new Error(`embedding size ${shape.nEmbd} must be divisible by the head count ${shape.nHead}`);
  }
  if (shape.nHead % shape.nHeadKv !== 0) {
    throw new Error(`head count ${shape.nHead} must be divisible by the kv head count ${shape.nHeadKv}`);
  }
  // RoPE rotates pairs of dimensions, so each head needs an even size.
  if ((shape.nEmbd / shape.nHead) % 2 !== 0) {
    throw new Error(`head size ${shape.nEmbd / shape.nHead} must be even for rotary embeddings`);
  }
  return shape;
}

/** validateLlamaShape plus the scalar hyper-parameters. */
export function validateLlamaConfig(config: LlamaConfig): LlamaConfig {
  validateLlamaShape(config);
  if (!Number.isSafeInteger(config.contextLength) || config.contextLength < 1) {
    throw new Error(`contextLength must be a positive integer, got ${config.contextLength}`);
  }
  if (!(config.ropeTheta > 0)) throw new Error(`ropeTheta must be positive, got ${config.ropeTheta}`);
  if (!(config.rmsEps > 0)) throw new Error(`rmsEps must be positive, got ${config.rmsEps}`);
  return config;
}

export function headDim(shape: Pick<LlamaShape, "nEmbd" | "nHead">): number {
  return shape.nEmbd / shape.nHead;
}

/** Parameter count of the model (embedding and output counted separately: they are not tied). */
export function countLlamaParameters(shape: LlamaShape): number {
  const kvDim = headDim(shape) * shape.nHeadKv;
  const attention = 2 * shape.nEmbd * shape.nEmbd + 2 * shape.nEmbd * kvDim;
  const mlp = 3 * shape.nEmbd * shape.nFf;
  const perLayer = attention + mlp + 2 * shape.nEmbd;
  return shape.nLayer * perLayer + 2 * shape.vocabSize * shape.nEmbd + shape.nEmbd;
}
