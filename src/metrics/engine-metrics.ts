import type { EngineInfo } from "../engine/engine-build.js";
import { Gauge, type MetricsRegistry } from "./prometheus.js";

/**
 * `lori_engine_info{build,openmp,gpu,llama_cpp,threads} 1`: which llama.cpp binaries this server runs
 * (`build="source-openmp"`: built by `npm run build:engine`; `"prebuilt"`: node-llama-cpp's own) and with how
 * many compute threads per context, so a dashboard can tell a slow replica running the fallback apart.
 */
export function registerEngineMetrics(registry: MetricsRegistry, engine: EngineInfo, threads: number): void {
  const labels = {
    build: engine.build,
    openmp: String(engine.openmp),
    gpu: engine.gpu,
    llama_cpp: engine.llamaCpp,
    threads: String(threads),
  };
  registry.register(
    new Gauge("lori_engine_info", "The llama.cpp engine in use (build: source-openmp or prebuilt); value is always 1.", () => [
      { labels, value: 1 },
    ]),
  );
}
