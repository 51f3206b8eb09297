import type { KeyGrant } from "../config/keys-file.js";
import type { AdapterRegistry } from "../engine/adapters/adapter-registry.js";
import type { ModelRegistry } from "../engine/model-registry.js";
import type { FineTuningService } from "../fine-tuning/fine-tuning-service.js";
import type { Metrics } from "../metrics/metrics.js";
import type { Logger } from "../util/logger.js";

/** What the HTTP layer needs from the rest of the server. */
export interface AppDeps {
  readonly models: ModelRegistry;
  readonly adapters: AdapterRegistry;
  readonly config: {
    readonly keys: readonly KeyGrant[];
    readonly maxBodyBytes: number;
    /** Directories (besides the adapters dir) that `POST /adapters {path}` may register from. */
    readonly adapterRoots: readonly string[];
  };
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly lifecycle: ServerLifecycle;
  /** Files and fine-tuning jobs (/v1/files, /v1/fine_tuning); absent = those routes do not exist. */
  readonly fineTuning?: FineTuningService;
}

/** Readiness and draining, shared by the probes and the request handlers. */
export class ServerLifecycle {
  ready = false;
  draining = false;
}
