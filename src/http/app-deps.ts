import type { KeyGrant } from "../config/keys-file.js";
import type { FineTuningService } from "../fine-tuning/fine-tuning-service.js";
import type { ServingDeps } from "../serving/serving-deps.js";

/** What the HTTP layer needs: the serving deps plus its own settings. */
export interface AppDeps extends ServingDeps {
  readonly config: {
    readonly keys: readonly KeyGrant[];
    readonly maxBodyBytes: number;
    /** Directories (besides the adapters dir) that `POST /adapters {path}` may register from. */
    readonly adapterRoots: readonly string[];
    /** Serve the browser playground at / and /ui/ (false with --no-ui). Absent = served. */
    readonly ui?: boolean;
    /** `/metrics` without a key, every series (--public-metrics). Absent = behind auth like every route. */
    readonly publicMetrics?: boolean;
  };
  /** Files and fine-tuning jobs (/v1/files, /v1/fine_tuning); absent = those routes do not exist. */
  readonly fineTuning?: FineTuningService;
}
