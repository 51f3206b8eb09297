/**
 * Which adapter set dominates a model's traffic: the keys of the last `window` admitted requests (base-model
 * requests included, as key ""), counted in a ring. A set is hot when it has at least `share` of the requests
 * in the window and at least `minRequests` of them; it has cooled once its share falls below half of `share`
 * (the gap keeps a set near the threshold from being loaded and unloaded in turn).
 */
export interface DominanceRule {
  /** Admitted requests remembered. */
  readonly window: number;
  /** Fraction of the window (0 < share <= 1) a set needs to be hot. */
  readonly share: number;
  /** Requests in the window a set needs to be hot (<= window). */
  readonly minRequests: number;
}

export class SetTraffic {
  private readonly ring: string[] = [];
  private next = 0;
  private readonly counts = new Map<string, number>();

  constructor(readonly rule: DominanceRule) {}

  record(key: string): void {
    if (this.ring.length < this.rule.window) {
      this.ring.push(key);
    } else {
      const old = this.ring[this.next]!;
      const left = (this.counts.get(old) ?? 1) - 1;
      if (left > 0) this.counts.set(old, left);
      else this.counts.delete(old);
      this.ring[this.next] = key;
      this.next = (this.next + 1) % this.rule.window;
    }
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Requests for `key` in the window. */
  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** The share of the window's requests that were for `key` (0 while the window is empty). */
  share(key: string): number {
    return this.ring.length === 0 ? 0 : this.count(key) / this.ring.length;
  }

  /** Whether `key` (never the base, "") is hot now. */
  isHot(key: string): boolean {
    return key !== "" && this.count(key) >= this.rule.minRequests && this.share(key) >= this.rule.share;
  }

  /** Whether `key` has cooled: its share is below half the hot threshold. */
  hasCooled(key: string): boolean {
    return this.share(key) < this.rule.share / 2;
  }
}
