import type { TrainMethod } from "./native-trainer.js";

/**
 * The settings a training run uses when the command line leaves them out, per method. They were measured on the
 * committed demo model (models/lori-demo.gguf, 0.8 M parameters) with 300 math records, one epoch at batch 1
 * (docs/training.md, "How the defaults were chosen"): the held-out loss per token and exact answers of each method
 * at a few learning rates. The old single default (1e-4) left the loss near where it started.
 *
 * - LoRI-S trains a tenth of B, so it takes a larger step than dense B (1e-2; LoRI-D diverges there).
 * - Its calibration phase is a LoRI-D run and takes LoRI-D's rate (3e-3): a better dense B gives a better mask.
 * - LoRA trains A as well, and is best at 1e-3 (3e-3 overshoots).
 * - DoRA trains what LoRA trains plus a magnitude per output row: LoRA's rate (not measured on its own).
 * - Full fine-tuning moves every weight of the base: 1e-4 (not re-measured; larger rates forget the base).
 * - Batch 1: with one epoch, a larger batch means fewer steps, and on small data sets that learned less.
 */
export interface MethodDefaults {
  readonly lr: number;
  /** LoRI-S `--calibrate`: the learning rate of its LoRI-D phase. */
  readonly calibrateLr: number;
  readonly batch: number;
  /** Adapter methods only (full fine-tuning has no rank). */
  readonly rank: number;
}

export const METHOD_DEFAULTS: Readonly<Record<TrainMethod | "full", MethodDefaults>> = {
  "lori-s": { lr: 1e-2, calibrateLr: 3e-3, batch: 1, rank: 32 },
  "lori-d": { lr: 3e-3, calibrateLr: 3e-3, batch: 1, rank: 32 },
  lora: { lr: 1e-3, calibrateLr: 3e-3, batch: 1, rank: 32 },
  dora: { lr: 1e-3, calibrateLr: 3e-3, batch: 1, rank: 32 },
  full: { lr: 1e-4, calibrateLr: 3e-3, batch: 1, rank: 0 },
};

/** `--lr 0.01 --batch 8 ...`: the defaults a run used, written as the flags that would set them. */
export function formatAppliedDefaults(applied: Readonly<Record<string, number | string>>): string {
  return Object.entries(applied)
    .map(([flag, value]) => `--${flag} ${value}`)
    .join(" ");
}
