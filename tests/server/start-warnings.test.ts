// Starting on a model the adapters were not made for (e.g. an image that fell back to the random model) must
// say so at start, not only as adapter_incompatible on the first request.
import { existsSync } from "node:fs";
import { cp } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { resolveServeConfig } from "../../src/config/serve-config.js";
import { DEMO_MODEL_PATH } from "../../src/model/embedded-model.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { startServer } from "../../src/server/start-server.js";
import { createLogger } from "../../src/util/logger.js";
import { useTempDir } from "../support/temp-dir.js";

const DEMO_ADAPTERS = fileURLToPath(new URL("../../adapters", import.meta.url));

async function startupWarnings(model: string, adaptersDir: string): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const logger = createLogger({ format: "json", write: (l) => lines.push(l) });
  const config = resolveServeConfig(
    { models: [model], adaptersDir, host: "127.0.0.1", port: 0, gpu: "off", threads: 1, contextSize: 256, adaptersPollMs: 0 },
    {},
  );
  const server = await startServer(config, { logger });
  await server.close();
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.level === "warn");
}

describe.skipIf(!existsSync(DEMO_MODEL_PATH))("start-up warnings", () => {
  const tmp = useTempDir();

  it("warns, naming them, when adapters fit none of the loaded models", async () => {
    const adapters = join(tmp.path, "adapters");
    await cp(DEMO_ADAPTERS, adapters, { recursive: true });
    const tiny = join(tmp.path, "tiny.gguf");
    await createTinyModel({ out: tiny, seed: 1 });
    const warnings = await startupWarnings(tiny, adapters);
    expect(warnings.filter((w) => w.event === "adapters_fit_no_model")).toEqual([
      expect.objectContaining({
        event: "adapters_fit_no_model",
        adapters: ["code", "math", "nlu", "safety"],
        message: expect.stringMatching(/not served: code, math, nlu, safety$/),
      }),
    ]);
    // Besides the summary, the registry's one warning per refused adapter, with its reason.
    const skipped = warnings.filter((w) => w.event === "adapter_skipped");
    expect(skipped.map((w) => w.adapter).sort()).toEqual(["code", "math", "nlu", "safety"]);
    for (const w of skipped) expect(w.message).toMatch(/fits none of the served models/);
    expect(warnings).toHaveLength(5);
    expect(await startupWarnings(DEMO_MODEL_PATH, adapters)).toEqual([]);
  });
});
