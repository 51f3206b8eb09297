import { Gauge, type MetricsRegistry } from "../metrics/prometheus.js";
import type { FineTuningService } from "./fine-tuning-service.js";
import { JOB_STATUSES } from "./job-store.js";

/** The fine-tuning gauges on the server's /metrics, read from the service at scrape time. */
export function registerFineTuningMetrics(registry: MetricsRegistry, service: FineTuningService): void {
  registry.register(
    new Gauge("lori_fine_tuning_jobs", "Fine-tuning jobs by status.", () => {
      const counts = service.jobsByStatus();
      return JOB_STATUSES.map((status) => ({ labels: { status }, value: counts[status] }));
    }),
  );
  registry.register(
    new Gauge("lori_fine_tuning_tokens_per_second", "Training tokens per second over all running fine-tuning jobs.", () => [
      { value: service.trainingTokensPerSecond() },
    ]),
  );
  registry.register(
    new Gauge("lori_fine_tuning_queue_length", "Fine-tuning jobs waiting for a training slot.", () => [{ value: service.queueLength() }]),
  );
}
