import type { Stat } from "./summary.js";

/** Number formats of the report, one place for all: accuracies are percent with 1 decimal. */

export const NOT_MEASURED = "—";

/** 0.5234 → "52.3 %". */
export function pct(x: number | null | undefined): string {
  return typeof x === "number" && Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : NOT_MEASURED;
}

/** Mean ± std over seeds, in percent: "52.3 ± 1.2 %"; no ± for a single seed. */
export function pctStat(s: Stat | null | undefined): string {
  if (!s) return NOT_MEASURED;
  return s.n > 1 ? `${(s.mean * 100).toFixed(1)} ± ${(s.std * 100).toFixed(1)} %` : pct(s.mean);
}

/** A difference in percentage points, 1 decimal: "+1.3" / "−0.4" / "0.0". */
export function points(diff: number): string {
  const text = Math.abs(diff).toFixed(1);
  if (Number(text) === 0) return "0.0";
  return `${diff > 0 ? "+" : "−"}${text}`;
}

/** 1234567 → "1,234,567". */
export function count(n: number | null | undefined): string {
  return typeof n === "number" && Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : NOT_MEASURED;
}

/** 1536 → "1.5 KiB". */
export function bytes(n: number | null | undefined): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return NOT_MEASURED;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Seconds → "42 s", "3 min 05 s", "2 h 07 min". */
export function duration(seconds: number | null | undefined): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return NOT_MEASURED;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** A plain number with fixed decimals; "—" for null. */
export function fixed(x: number | null | undefined, digits: number): string {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : NOT_MEASURED;
}

/** Mean ± std of a plain number: "0.123 ± 0.004". */
export function fixedStat(s: Stat | null | undefined, digits: number, unit = ""): string {
  if (!s) return NOT_MEASURED;
  const tail = unit ? ` ${unit}` : "";
  return s.n > 1 ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}${tail}` : `${s.mean.toFixed(digits)}${tail}`;
}
