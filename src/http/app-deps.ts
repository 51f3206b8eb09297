import type { ServeConfig } from "../config/serve-config.js";
import type { ModelRegistry } from "../engine/model-registry.js";
import type { Logger } from "../util/logger.js";

/** What the HTTP layer needs from the rest of the server. */
export interface AppDeps {
  readonly models: ModelRegistry;
  readonly config: Pick<ServeConfig, "apiKeys" | "maxBodyBytes">;
  readonly logger: Logger;
  readonly lifecycle: ServerLifecycle;
}

/** Readiness and draining, shared by the probes and the request handlers. */
export class ServerLifecycle {
  ready = false;
  draining = false;
}
