import { splitValidation } from "../../src/train/training-data.js";

/**
 * The trainer logs a validation loss on records it holds out of its data file (`--val-fraction F`), chosen by a
 * shuffle seeded with the run's `--seed`. To log the loss on the task's dev split instead, the train and dev
 * records go into one file with every dev record exactly where that shuffle will look: the trainer then holds out
 * the dev split, all of it and nothing else, and trains on the train split. Needs no trainer option of its own.
 */
export function interleaveDev<T>(train: readonly T[], dev: readonly T[], seed: number): { records: T[]; valFraction: number } {
  if (dev.length === 0 || train.length === 0) throw new RangeError("interleaveDev: needs train and dev records");
  const total = train.length + dev.length;
  const valFraction = dev.length / total;
  const held = splitValidation(
    Array.from({ length: total }, (_, i) => i),
    valFraction,
    seed,
  ).validation;
  if (held.length !== dev.length) throw new Error(`interleaveDev: the trainer would hold out ${held.length} records, not ${dev.length}`);
  const heldSet = new Set(held);
  const records: T[] = [];
  let t = 0;
  let d = 0;
  for (let i = 0; i < total; i++) records.push(heldSet.has(i) ? dev[d++]! : train[t++]!);
  return { records, valFraction };
}
