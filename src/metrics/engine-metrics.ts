import type { EngineInfo } from "../engine/engine-build.js";
import { Gauge, type MetricsRegistry } from "./prometheus.js";

/**
 * `lori_engine_info{build,openmp,gpu,llama_cpp,threads,thread_pool} 1`: which llama.cpp binaries this server
 * runs (`build="source-openmp"`: built by `npm run build:engine`; `"prebuilt"`: node-llama-cpp's own), with how
 * many compute threads per context and whether they persist between decodes (`thread_pool="persistent"` or
 * `"openmp"`; `"per-compute"` is the fallback), so a dashboard can tell a slow replica apart.
 */
export function registerEngineMetrics(registry: MetricsRegistry, engine: EngineInfo, threads: number): void {
  const labels = {
    build: engine.build,
    openmp: String(engine.openmp),
    gpu: engine.gpu,
    llama_cpp: engine.llamaCpp,
    threads: String(threads),
    thread_pool: engine.threadPool,
  };
  registry.register(
    new Gauge("lori_engine_info", "The llama.cpp engine in use (build: source-openmp or prebuilt); value is always 1.", () => [
      { labels, value: 1 },
    ]),
  );
}
