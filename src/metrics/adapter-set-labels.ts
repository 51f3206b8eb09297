/** The label value that stands for every adapter set beyond the limit. */
export const OTHER_ADAPTER_SETS = "(other)";

/**
 * Bounds the distinct `adapter_set` label values of the metrics. Each set label costs a series in every
 * per-set metric forever, and a client can make a new set per request (a new weight each time), so the first
 * `maxLabels` sets keep their own label and later ones share `(other)`. It also remembers which adapters each
 * label names, so a scrape can hide the sets a key may not use.
 */
export class AdapterSetLabels {
  private readonly members = new Map<string, readonly string[]>();

  constructor(private readonly maxLabels: number) {}

  /** The label to record for a set; "" (the base model) is always its own. */
  labelFor(setLabel: string, adapterNames: readonly string[]): string {
    if (setLabel === "" || this.members.has(setLabel)) return setLabel;
    if (this.members.size >= this.maxLabels) return OTHER_ADAPTER_SETS;
    this.members.set(setLabel, [...adapterNames]);
    return setLabel;
  }

  /** Whether a caller allowed `mayUse` may see this label (unknown labels name nothing we recorded). */
  visible(label: string, mayUse: (adapter: string) => boolean): boolean {
    const names = this.members.get(label);
    return names === undefined || names.every(mayUse);
  }
}
