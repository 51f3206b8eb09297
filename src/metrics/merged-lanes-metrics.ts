import type { ServedModel } from "../engine/served-model.js";
import type { AdapterSetLabels } from "./adapter-set-labels.js";
import { Gauge, type MetricsRegistry } from "./prometheus.js";

/** Merged-weight lanes (docs/merged-lanes.md) on /metrics: which sets have one, and their memory against the budget. */
export function registerMergedLanesMetrics(
  registry: MetricsRegistry,
  models: () => readonly ServedModel[],
  adapterSets: AdapterSetLabels,
): void {
  // Through the same bounded labels as every per-set metric, so a scrape hides sets a key may not use.
  const setLabel = (label: string) =>
    adapterSets.labelFor(
      label,
      label.split("+").map((part) => part.split("*")[0]!),
    );
  registry.register(
    new Gauge("lori_merged_lanes", "Merged-weight lanes by model, adapter set and state (building, ready, retiring): 1 each.", () =>
      models().flatMap((m) =>
        (m.mergedLanes?.views ?? []).map((lane) => ({
          labels: { model: m.spec.id, adapter_set: setLabel(lane.label), state: lane.state },
          value: 1,
        })),
      ),
    ),
  );
  registry.register(
    new Gauge("lori_merged_lanes_bytes", "Bytes of merged models loaded or being built, against --merged-lanes-mb.", () =>
      models().flatMap((m) =>
        m.mergedLanes ? [{ labels: { model: m.spec.id }, value: m.mergedLanes.views.reduce((n, l) => n + l.bytes, 0) }] : [],
      ),
    ),
  );
  registry.register(
    new Gauge("lori_merged_lanes_budget_bytes", "The --merged-lanes-mb budget per model, in bytes (absent when off).", () =>
      models().flatMap((m) => (m.mergedLanes ? [{ labels: { model: m.spec.id }, value: m.mergedLanes.budgetBytes }] : [])),
    ),
  );
}
