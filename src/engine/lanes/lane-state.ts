/**
 * The life of a lane (one context). The scheduler moves lanes only through `nextLaneState`, so a move that
 * the table does not allow is a bug that throws where it happens instead of corrupting a context later.
 *
 * - opening:  its context is being created with its binding applied; waiters may reserve its sequences.
 * - binding:  an idle lane's adapter set is being swapped (history cleared, adapters set); waiters may reserve.
 * - ready:    bound, no sequence leased; it may take requests of its set, be rebound or be disposed.
 * - busy:     at least one sequence leased; it takes more requests of its set while it has free sequences.
 * - draining: takes no new requests; once its last sequence is back it is rebound for the waiters that
 *             reserved it (or becomes ready if they all left).
 * - failed:   opening or binding failed and the context cannot be trusted; it is being disposed.
 * - disposed: its context is freed; terminal.
 */
export type LaneState = "opening" | "binding" | "ready" | "busy" | "draining" | "failed" | "disposed";

const TRANSITIONS: { readonly [From in LaneState]: readonly LaneState[] } = {
  opening: ["ready", "failed", "disposed"],
  // A failed rebind binds back to the previous set, still in "binding". Disposal waits for the swap to end.
  binding: ["binding", "ready", "failed", "disposed"],
  ready: ["busy", "binding", "disposed"],
  busy: ["ready", "draining", "disposed"],
  // Reservations gone while sequences are still out: back to busy; last sequence back: rebind or ready.
  draining: ["busy", "ready", "binding", "disposed"],
  failed: ["disposed"],
  disposed: [],
};

export class IllegalLaneTransitionError extends Error {
  readonly kind = "internal" as const;
  constructor(
    readonly laneId: number,
    readonly from: LaneState,
    readonly to: LaneState,
  ) {
    super(`lane ${laneId}: illegal state transition ${from} -> ${to}`);
    this.name = "IllegalLaneTransitionError";
  }
}

/** The state after `from -> to`, or throws when the table does not allow that move. */
export function nextLaneState(laneId: number, from: LaneState, to: LaneState): LaneState {
  if (!TRANSITIONS[from].includes(to)) throw new IllegalLaneTransitionError(laneId, from, to);
  return to;
}

export const LANE_STATES: readonly LaneState[] = ["opening", "binding", "ready", "busy", "draining", "failed", "disposed"];

/** Whether the lane counts against `maxLanes` (its context exists or is being created). */
export function holdsCapacity(state: LaneState): boolean {
  return state !== "disposed";
}
