import { useEffect, useState } from "preact/hooks";
import { apiFetch, errorText } from "../api";
import { ErrorBox } from "../components";
import { parseMetrics, total } from "../metrics";

const POLL_MS = 2000;
const KEEP = 60;

interface Point {
  at: number;
  tokensPerSecond: number;
  queueDepth: number;
  lanesBusy: number;
  lanesIdle: number;
  sequencesBusy: number;
  swaps: number;
  adaptersResident: number;
}

/** Live charts from /metrics, polled every 2 s while this view is shown. */
export function ServerView({ active }: { active: boolean }) {
  const [points, setPoints] = useState<Point[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!active) return;
    let live = true;
    let previous: { at: number; tokens: number } | null = null;
    const poll = async () => {
      try {
        const text = await (await apiFetch("/metrics")).text();
        if (!live) return;
        const samples = parseMetrics(text);
        const at = Date.now();
        // Every token llama.cpp decodes, counted as it happens (lori_generation_tokens_total only grows when
        // a request ends, so its rate comes in bursts).
        const tokens = total(samples, "lori_tokens_per_decode_sum");
        const rate = previous && at > previous.at ? Math.max(0, (tokens - previous.tokens) / ((at - previous.at) / 1000)) : 0;
        previous = { at, tokens };
        const point: Point = {
          at,
          tokensPerSecond: rate,
          queueDepth: total(samples, "lori_queue_depth"),
          lanesBusy: total(samples, "lori_lanes", { state: "busy" }),
          lanesIdle: total(samples, "lori_lanes", { state: "idle" }),
          sequencesBusy: total(samples, "lori_sequences_busy"),
          swaps: total(samples, "lori_lane_swaps_total"),
          adaptersResident: total(samples, "lori_adapters_resident"),
        };
        setPoints((all) => [...all.slice(-(KEEP - 1)), point]);
        setError(null);
      } catch (e) {
        if (live) setError(errorText(e));
      }
    };
    void poll();
    const timer = setInterval(poll, POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [active]);

  const series = (pick: (p: Point) => number) => points.map(pick);
  return (
    <div class="server">
      <ErrorBox message={error} />
      <p class="muted">
        From /metrics every {POLL_MS / 1000} s; up to the last {KEEP} samples ({points.length} so far).
      </p>
      <div class="charts" data-testid="charts" data-samples={points.length}>
        <Chart title="Tokens/s decoded" values={series((p) => p.tokensPerSecond)} format={(v) => v.toFixed(1)} />
        <Chart title="Queue depth" values={series((p) => p.queueDepth)} />
        <Chart title="Lanes busy" values={series((p) => p.lanesBusy)} />
        <Chart title="Lanes idle" values={series((p) => p.lanesIdle)} />
        <Chart title="Sequences busy" values={series((p) => p.sequencesBusy)} testId="sequences-busy" />
        <Chart title="Lane swaps (total)" values={series((p) => p.swaps)} />
        <Chart title="Adapters resident" values={series((p) => p.adaptersResident)} />
      </div>
    </div>
  );
}

/** A line over the samples, scaled from 0 to the largest value seen; the latest value in large type. */
function Chart({
  title,
  values,
  format = (v) => String(Math.round(v)),
  testId,
}: {
  title: string;
  values: number[];
  format?: (v: number) => string;
  testId?: string;
}) {
  const width = 240;
  const height = 64;
  const top = Math.max(1, ...values);
  // The samples so far fill the width: a fresh page shows a line, not a dot at the right edge.
  const step = width / Math.max(1, values.length - 1);
  const offset = 0;
  const path = values
    .map((v, i) => `${i === 0 ? "M" : "L"}${(offset + i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`)
    .join(" ");
  const latest = values[values.length - 1];
  return (
    <figure class="panel chart" data-testid={testId}>
      <figcaption>
        <span>{title}</span>
        <strong class="chart-value">{latest === undefined ? "–" : format(latest)}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label={title}>
        <line x1="0" y1={height - 1} x2={width} y2={height - 1} class="axis" />
        {values.length > 1 ? <path d={path} class="line" /> : null}
      </svg>
      <small class="muted">max {format(top)}</small>
    </figure>
  );
}
