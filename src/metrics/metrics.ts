import type { ModelRegistry } from "../engine/model-registry.js";
import { AdapterSetLabels } from "./adapter-set-labels.js";
import { Counter, Gauge, Histogram, MetricsRegistry, type LabelView } from "./prometheus.js";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The server's metrics. Our own names are `lori_*`; the `vllm:*` aliases carry the semantics the
 * Kubernetes Gateway API Inference Extension reads (queue depth, KV-cache use, running/waiting adapters),
 * so replicas can be routed with adapter affinity.
 */
export class Metrics {
  readonly registry = new MetricsRegistry();
  readonly requests: Counter;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly requestDuration: Histogram;
  readonly swaps: Counter;
  readonly swapSeconds: Histogram;
  readonly lanesCreated: Counter;
  readonly adapterLoads: Counter;
  readonly adapterEvictions: Counter;
  readonly tokensPerDecode: Histogram;
  readonly laneFailures: Counter;
  /** Bounds and remembers the `adapter_set` label values (see AdapterSetLabels). */
  readonly adapterSets: AdapterSetLabels;

  constructor(
    models: () => ModelRegistry,
    residentBytes: () => number,
    options: { maxAdapterSetLabels: number } = { maxAdapterSetLabels: 64 },
  ) {
    this.adapterSets = new AdapterSetLabels(options.maxAdapterSetLabels);
    const r = this.registry;
    this.requests = r.register(new Counter("lori_requests_total", "Finished requests by route, adapter set and finish reason."));
    this.promptTokens = r.register(new Counter("lori_prompt_tokens_total", "Prompt tokens by adapter set."));
    this.generationTokens = r.register(new Counter("lori_generation_tokens_total", "Generated tokens by adapter set."));
    this.timeToFirstToken = r.register(
      new Histogram("lori_time_to_first_token_seconds", "Time to first token by adapter set.", LATENCY_BUCKETS),
    );
    this.requestDuration = r.register(new Histogram("lori_request_duration_seconds", "Request latency by adapter set.", LATENCY_BUCKETS));
    this.swaps = r.register(new Counter("lori_lane_swaps_total", "Lanes rebound to another adapter set."));
    this.swapSeconds = r.register(
      new Histogram("lori_lane_swap_seconds", "Time to rebind a lane.", [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]),
    );
    this.lanesCreated = r.register(new Counter("lori_lanes_created_total", "Lanes (contexts) created."));
    this.adapterLoads = r.register(new Counter("lori_adapter_loads_total", "Compiled adapter files loaded into llama.cpp."));
    this.adapterEvictions = r.register(new Counter("lori_adapter_evictions_total", "Compiled adapter files freed (LRU)."));
    this.tokensPerDecode = r.register(
      new Histogram(
        "lori_tokens_per_decode",
        "Tokens in each llama.cpp decode call (sequences of a lane batch together).",
        [1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256, 512],
      ),
    );
    this.laneFailures = r.register(new Counter("lori_lane_failures_total", "Lanes retired after a failed open or rebind."));

    const stats = () =>
      models()
        .list()
        .map((m) => m.lanes.stats);
    const sum = (pick: (s: ReturnType<typeof stats>[number]) => number) => stats().reduce((n, s) => n + pick(s), 0);
    r.register(new Gauge("lori_queue_depth", "Requests waiting for a lane.", () => [{ value: sum((s) => s.queued) }]));
    r.register(
      new Gauge("vllm:num_requests_waiting", "Alias of lori_queue_depth (inference gateway).", () => [{ value: sum((s) => s.queued) }]),
    );
    r.register(new Gauge("vllm:num_requests_running", "Sequences generating.", () => [{ value: sum((s) => s.busySequences) }]));
    r.register(
      new Gauge(
        "lori_lanes",
        "Lanes by state (busy/idle, and each scheduler state: opening, binding, ready, busy, draining, failed).",
        () => {
          const byState = new Map<string, number>();
          for (const s of stats())
            for (const [state, count] of Object.entries(s.lanesByState)) byState.set(state, (byState.get(state) ?? 0) + count);
          // "idle" is kept for dashboards built on the first release: lanes with no sequence in use.
          const samples = [{ labels: { state: "idle" }, value: sum((s) => s.lanes - s.busyLanes) }];
          for (const [state, value] of byState) if (state !== "disposed") samples.push({ labels: { state }, value });
          return samples;
        },
      ),
    );
    r.register(new Gauge("lori_sequences_busy", "Sequences generating.", () => [{ value: sum((s) => s.busySequences) }]));
    r.register(new Gauge("lori_kv_cache_usage_ratio", "Used KV cells over all cells of all lanes (0..1).", () => [{ value: kvUsage() }]));
    r.register(
      new Gauge("vllm:gpu_cache_usage_perc", "Alias of lori_kv_cache_usage_ratio (vLLM's name before its V1 engine).", () => [
        { value: kvUsage() },
      ]),
    );
    r.register(
      new Gauge(
        "vllm:kv_cache_usage_perc",
        "Alias of lori_kv_cache_usage_ratio (vLLM's current name; the inference gateway's default).",
        () => [{ value: kvUsage() }],
      ),
    );
    r.register(
      new Gauge("lori_adapters_resident", "Compiled adapter files loaded.", () => [
        {
          value: models()
            .list()
            .reduce((n, m) => n + m.lanes.residency.residentCount, 0),
        },
      ]),
    );
    r.register(new Gauge("lori_adapter_bytes_resident", "Bytes of compiled adapter files loaded.", () => [{ value: residentBytes() }]));
    // One sample per scrape, valued at the scrape time: the endpoint picker keeps the series with the highest
    // value, as vLLM's gauge (set_to_current_time) leaves a series per label permutation behind.
    // running = adapter sets with a sequence generating now (vLLM: requests in the running queue), waiting =
    // sets of queued requests, max_lora = lanes, i.e. how many sets can be bound at once (vLLM: --max-loras,
    // adapters in one batch). Our own name adds resident_lora_adapters: sets bound to a lane, idle or busy,
    // which a request can use without a rebind (vLLM has no such label; the picker ignores labels it does not know).
    const loraInfo = () => {
      const all = stats();
      const running = new Set(all.flatMap((s) => s.bindings.filter((b) => b.busy > 0 && b.label).map((b) => b.label)));
      const waiting = new Set(all.flatMap((s) => s.waitingLabels.filter(Boolean)));
      const resident = new Set(all.flatMap((s) => s.bindings.filter((b) => b.label).map((b) => b.label)));
      return {
        max_lora: String(all.reduce((n, s) => n + s.maxLanes, 0)),
        running_lora_adapters: [...running].join(","),
        waiting_lora_adapters: [...waiting].join(","),
        resident_lora_adapters: [...resident].join(","),
      };
    };
    r.register(
      new Gauge(
        "lori_lora_requests_info",
        "Running, waiting and lane-resident adapter sets, and the lanes (max_lora); value = time of this sample.",
        () => [{ labels: loraInfo(), value: Date.now() / 1000 }],
      ),
    );
    r.register(
      new Gauge("vllm:lora_requests_info", "Alias of lori_lora_requests_info with vLLM's labels only (inference gateway).", () => {
        const { resident_lora_adapters: _resident, ...vllmLabels } = loraInfo();
        return [{ labels: vllmLabels, value: Date.now() / 1000 }];
      }),
    );

    function kvUsage(): number {
      let used = 0;
      let total = 0;
      for (const model of models().list()) {
        const usage = model.lanes.kvUsage();
        used += usage.used;
        total += usage.total;
      }
      return total === 0 ? 0 : used / total;
    }
  }

  /**
   * The text exposition. With `mayUse` (a key with an adapter allow-list), series of adapter sets naming an
   * adapter outside the list are left out, and so are such sets in the running/waiting lists: a tenant learns
   * nothing about adapters it cannot use.
   */
  render(mayUse?: (adapter: string) => boolean): string {
    if (!mayUse) return this.registry.render();
    const sets = this.adapterSets;
    const view: LabelView = (labels) => {
      if (labels.adapter_set !== undefined && !sets.visible(labels.adapter_set, mayUse)) return null;
      if (labels.running_lora_adapters === undefined && labels.waiting_lora_adapters === undefined) return labels;
      const keep = (list: string | undefined) =>
        (list ?? "")
          .split(",")
          .filter((label) => label !== "" && sets.visible(label, mayUse) && label.split("+").every((part) => mayUse(part.split("*")[0]!)))
          .join(",");
      const shown: Record<string, string> = {
        ...labels,
        running_lora_adapters: keep(labels.running_lora_adapters),
        waiting_lora_adapters: keep(labels.waiting_lora_adapters),
      };
      if (labels.resident_lora_adapters !== undefined) shown.resident_lora_adapters = keep(labels.resident_lora_adapters);
      return shown;
    };
    return this.registry.render(view);
  }
}
