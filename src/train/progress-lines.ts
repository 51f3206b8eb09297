import type { TrainProgress } from "./train-common.js";

/**
 * Progress for a log (stderr redirected to a file or a pipe, no `--json`): a plain line every `every` steps, at the
 * last step of a phase and at every validation, e.g.
 * `train 2/2: step 40/200 (20%), loss 0.8123 nats/token, 3712 tokens/s, 12.3 s elapsed, ETA 48 s`.
 */
export class ProgressLines {
  private phase = "";
  private phaseStart: { step: number; elapsed: number } | undefined;

  constructor(
    private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
    /** Steps between lines; default: about 20 lines per phase. */
    private readonly every?: number,
  ) {}

  update(progress: TrainProgress): void {
    const { event } = progress;
    if (progress.phase !== this.phase) {
      this.phase = progress.phase;
      this.phaseStart = undefined;
    }
    const label = phaseLabel(progress);
    if (event.event === "warning") this.write(`${label}: warning: ${event.message}`);
    if (event.event === "eval")
      this.write(
        `${label}: step ${event.step}/${progress.totalSteps}, validation ${formatLoss(event.loss, progress.lossPerToken)} (${event.n_seqs} sequences)`,
      );
    if (event.event !== "step") return;
    this.phaseStart ??= { step: event.step - 1, elapsed: 0 };
    const every = this.every ?? Math.max(1, Math.ceil(progress.totalSteps / 20));
    if (event.step % every !== 0 && event.step < progress.totalSteps) return;
    const done = event.step - this.phaseStart.step;
    const perStep = done > 0 ? (event.elapsed_s - this.phaseStart.elapsed) / done : 0;
    const percent = Math.floor((100 * event.step) / progress.totalSteps);
    this.write(
      `${label}: step ${event.step}/${progress.totalSteps} (${percent}%), ${formatLoss(event.loss, progress.lossPerToken)}, ` +
        `${Math.round(event.tokens_per_s)} tokens/s, ${event.elapsed_s.toFixed(1)} s elapsed, ETA ${formatSeconds(perStep * (progress.totalSteps - event.step))}`,
    );
  }
}

/** `train` for a one-phase run, `calibrate 1/2` / `train 2/2` for LoRI-S with --calibrate. */
export function phaseLabel(progress: Pick<TrainProgress, "phase" | "phaseIndex" | "phaseCount">): string {
  return progress.phaseCount > 1 ? `${progress.phase} ${progress.phaseIndex + 1}/${progress.phaseCount}` : progress.phase;
}

/** `loss 0.8123 nats/token`, or the trainer's per-sequence loss, labelled so, when the token count is unknown. */
export function formatLoss(lossPerSequence: number, lossPerToken: number | null): string {
  return lossPerToken === null ? `loss ${lossPerSequence.toFixed(4)} nats/sequence` : `loss ${lossPerToken.toFixed(4)} nats/token`;
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(rest).padStart(2, "0")}s` : `${rest}s`;
}
