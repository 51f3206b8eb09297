/**
 * A small Prometheus text-format registry: counters, gauges and histograms with labels. Enough for our own
 * metrics; values are kept per label set in insertion order so the output is stable.
 */
export type Labels = Readonly<Record<string, string>>;

/**
 * What one scrape may see: returns the labels to show for a series (possibly rewritten), or null to leave
 * the series out. Used to hide adapter names from keys that may not use them.
 */
export type LabelView = (labels: Labels) => Labels | null;

const SHOW_ALL: LabelView = (labels) => labels;

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k]!)}"`)
    .join(",");
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

interface Metric {
  render(view: LabelView): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    const series = this.values.get(key);
    if (series) series.value += by;
    else this.values.set(key, { labels, value: by });
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
  render(view: LabelView): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [key, { labels, value }] of this.values) {
      const shown = view(labels);
      if (!shown) continue;
      const shownKey = shown === labels ? key : labelKey(shown);
      lines.push(`${this.name}${shownKey ? `{${shownKey}}` : ""} ${formatValue(value)}`);
    }
    return lines.join("\n");
  }
}

/** A gauge whose samples are computed at scrape time. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly collect: () => Array<{ labels?: Labels; value: number }>,
  ) {}
  render(view: LabelView): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const { labels: collected = {}, value } of this.collect()) {
      const labels = view(collected);
      if (!labels) continue;
      const key = labelKey(labels);
      lines.push(`${this.name}${key ? `{${key}}` : ""} ${formatValue(value)}`);
    }
    return lines.join("\n");
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly buckets: readonly number[],
  ) {}
  observe(value: number, labels: Labels = {}): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    this.buckets.forEach((bound, i) => {
      if (value <= bound) s.counts[i]!++;
    });
    s.sum += value;
    s.count++;
  }
  render(view: LabelView): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const series of this.series.values()) {
      const labels = view(series.labels);
      if (!labels) continue;
      const s = { ...series, labels };
      this.buckets.forEach((bound, i) => {
        lines.push(`${this.name}_bucket{${labelKey({ ...s.labels, le: formatValue(bound) })}} ${s.counts[i]}`);
      });
      lines.push(`${this.name}_bucket{${labelKey({ ...s.labels, le: "+Inf" })}} ${s.count}`);
      const key = labelKey(s.labels);
      lines.push(`${this.name}_sum${key ? `{${key}}` : ""} ${formatValue(s.sum)}`);
      lines.push(`${this.name}_count${key ? `{${key}}` : ""} ${s.count}`);
    }
    return lines.join("\n");
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  register<M extends Metric>(metric: M): M {
    this.metrics.push(metric);
    return metric;
  }
  render(view: LabelView = SHOW_ALL): string {
    return `${this.metrics.map((m) => m.render(view)).join("\n")}\n`;
  }
}
