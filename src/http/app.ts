import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { adapterInspectRoutes } from "../routes/adapter-inspect.js";
import { adaptersRoutes } from "../routes/adapters.js";
import { metricsRoutes, publicMetricsRoutes } from "../routes/metrics.js";
import { chatCompletionsRoutes } from "../routes/chat-completions.js";
import { completionsRoutes } from "../routes/completions.js";
import { embeddingsRoutes } from "../routes/embeddings.js";
import { filesRoutes } from "../routes/files.js";
import { fineTunedAdapterAccess, fineTuningRoutes } from "../routes/fine-tuning.js";
import { healthRoutes } from "../routes/health.js";
import { modelsRoutes } from "../routes/models.js";
import { openapiRoutes } from "../routes/openapi.js";
import { tokenizeRoutes } from "../routes/tokenize.js";
import { uiSessionRoutes, uiStaticRoutes } from "../routes/ui.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "./app-deps.js";
import { bearerAuth } from "./auth.js";
import { errorResponder } from "./error-handler.js";

/** The HTTP application, without a listening socket (tests call `app.request()`). */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.onError(errorResponder(deps.logger));
  app.notFound((c) => {
    const error = apiErrors.routeNotFound(c.req.method, c.req.path);
    return c.json(error.toJSON(), error.status);
  });
  const bodyLimited = bodyLimit({
    maxSize: deps.config.maxBodyBytes,
    onError: () => {
      throw apiErrors.payloadTooLarge(deps.config.maxBodyBytes);
    },
  });
  // File uploads have their own limit (--max-file-mb), applied by the files route.
  app.use("*", (c, next) => (deps.fineTuning && c.req.method === "POST" && c.req.path === "/v1/files" ? next() : bodyLimited(c, next)));
  // The playground's static files come before auth: the page must load so the user can enter a key.
  if (deps.config.ui !== false) app.route("/", uiStaticRoutes());
  // The inference gateway's endpoint picker scrapes without credentials: with --public-metrics, /metrics
  // answers before auth, in full (adapter names included), and the operator keeps the port off the internet.
  if (deps.config.publicMetrics === true) app.route("/", publicMetricsRoutes(deps));
  app.use("*", bearerAuth(deps.config.keys, new Set(["/health"])));
  if (deps.fineTuning) app.use("*", fineTunedAdapterAccess(deps.fineTuning));
  if (deps.config.ui !== false) app.route("/", uiSessionRoutes());
  app.route("/", healthRoutes(deps));
  app.route("/", openapiRoutes());
  app.route("/", modelsRoutes(deps));
  app.route("/", chatCompletionsRoutes(deps));
  app.route("/", completionsRoutes(deps));
  app.route("/", embeddingsRoutes(deps));
  app.route("/", tokenizeRoutes(deps));
  app.route("/", adaptersRoutes(deps));
  app.route("/", adapterInspectRoutes(deps));
  app.route("/", metricsRoutes(deps));
  if (deps.fineTuning) {
    app.route("/", filesRoutes(deps.fineTuning));
    app.route("/", fineTuningRoutes(deps.fineTuning));
  }
  return app;
}
