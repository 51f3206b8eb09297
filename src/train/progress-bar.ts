import { formatLoss, formatSeconds, phaseLabel } from "./progress-lines.js";
import type { TrainProgress } from "./train-common.js";

/**
 * One-line TTY progress: `phase [######----] step/total loss L nats/token val V nats/token tokens/s ETA`, redrawn in
 * place on stderr.
 */
export class ProgressBar {
  private lastDraw = 0;
  private phaseStart: { step: number; elapsed: number } | undefined;
  private phase = "";
  private lastEval: string | null = null;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly width = 24,
  ) {}

  update(progress: TrainProgress): void {
    const { event } = progress;
    if (progress.phase !== this.phase) {
      this.phase = progress.phase;
      this.phaseStart = undefined;
      this.lastEval = null;
    }
    if (event.event === "eval") this.lastEval = formatLoss(event.loss, progress.lossPerToken).replace(/^loss /, "");
    if (event.event === "warning") this.line(`warning: ${event.message}`);
    if (event.event !== "step") return;
    this.phaseStart ??= { step: event.step - 1, elapsed: 0 };
    const now = Date.now();
    if (now - this.lastDraw < 100 && event.step < progress.totalSteps) return;
    this.lastDraw = now;
    const fraction = Math.min(1, event.step / progress.totalSteps);
    const filled = Math.round(fraction * this.width);
    const done = event.step - this.phaseStart.step;
    const perStep = done > 0 ? (event.elapsed_s - this.phaseStart.elapsed) / done : 0;
    const eta = formatSeconds(perStep * (progress.totalSteps - event.step));
    const label = progress.phaseCount > 1 ? `${phaseLabel(progress)} ` : "";
    const val = this.lastEval === null ? "" : ` val ${this.lastEval}`;
    const text =
      `${label}[${"#".repeat(filled)}${"-".repeat(this.width - filled)}] ${event.step}/${progress.totalSteps} ` +
      `${formatLoss(event.loss, progress.lossPerToken)}${val} ${Math.round(event.tokens_per_s)} tok/s ETA ${eta}`;
    this.stream.write(`\r${text.slice(0, (this.stream.columns || 120) - 1)}\x1b[K`);
    if (event.step >= progress.totalSteps) this.stream.write("\n");
  }

  /** Prints a message on its own line without breaking the bar. */
  line(message: string): void {
    this.stream.write(`\r\x1b[K${message}\n`);
  }

  end(): void {
    this.stream.write("\r\x1b[K");
  }
}
