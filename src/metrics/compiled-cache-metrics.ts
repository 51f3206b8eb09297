import type { CompiledCache } from "../engine/adapters/compiled-cache.js";
import { Gauge, type MetricsRegistry } from "./prometheus.js";

/** The compiled-adapter cache on /metrics: disk use against its budget, files, pins and evictions. */
export function registerCompiledCacheMetrics(registry: MetricsRegistry, cache: CompiledCache): void {
  registry.register(
    new Gauge("lori_compiled_cache_bytes", "Bytes of compiled adapter files in <adapters-dir>/.compiled/.", () => [{ value: cache.bytes }]),
  );
  registry.register(
    new Gauge("lori_compiled_cache_budget_bytes", "The --compiled-cache-mb budget, in bytes.", () => [{ value: cache.budgetBytes }]),
  );
  registry.register(new Gauge("lori_compiled_cache_files", "Compiled adapter files in the cache.", () => [{ value: cache.files }]));
  registry.register(
    new Gauge("lori_compiled_cache_pinned_files", "Compiled files pinned by requests (compiled, not yet done generating).", () => [
      { value: cache.pinnedFiles },
    ]),
  );
  // A gauge of a monotonic count (the cache owns the number): Prometheus' rate() still works on it.
  registry.register(
    new Gauge("lori_compiled_cache_evictions", "Compiled files deleted to stay within the budget since start.", () => [
      { value: cache.evictions },
    ]),
  );
}
