import type { AdapterRegistry } from "../engine/adapters/adapter-registry.js";
import type { ModelRegistry } from "../engine/model-registry.js";
import type { Metrics } from "../metrics/metrics.js";
import type { Logger } from "../util/logger.js";

/** Readiness and draining, shared by the probes and the request handlers. */
export class ServerLifecycle {
  ready = false;
  draining = false;
}

/** What serving a request needs from the rest of the server (the HTTP layer's deps extend this). */
export interface ServingDeps {
  readonly models: ModelRegistry;
  readonly adapters: AdapterRegistry;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly lifecycle: ServerLifecycle;
  /** Fine-tuned models (`ft:<base>:<suffix>:<job>`) and the stored adapters they are; absent = none. */
  readonly fineTunedModels?: FineTunedModelNames;
}

export interface FineTunedModelNames {
  /** The stored adapter of a fine-tuned model id, or undefined when `modelId` is not one. */
  adapterForModelId(modelId: string): string | undefined;
  /** The fine-tuned model id a stored adapter is served as, or undefined. */
  modelIdForAdapter(name: string): string | undefined;
}
