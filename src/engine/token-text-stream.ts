import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * Turns generated tokens into text incrementally. A token may end in the middle of a UTF-8 character
 * (byte-fallback tokens), so text is only released once it decodes cleanly; the preceding tokens are
 * passed as context because SentencePiece detokenization depends on them (leading spaces).
 */
export class TokenTextStream {
  private readonly pending: Token[] = [];
  private readonly history: Token[];

  /** `context` = the tokens before the generated ones (the prompt), so the first piece keeps its space. */
  constructor(
    private readonly model: LlamaModel,
    context: readonly Token[] = [],
  ) {
    this.history = context.slice(-8);
  }

  /** Returns the newly completed text (possibly empty). */
  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, false, this.history.slice(-8));
    if (text.endsWith("\uFFFD") && this.pending.length < 4) return "";
    this.history.push(...this.pending);
    this.pending.length = 0;
    return text;
  }
}

/**
 * Holds back the tail of the text that could still become a stop string, and reports where a stop string
 * matched. The emitted text never contains a stop string.
 */
export class StopStringMatcher {
  private buffer = "";
  private readonly holdback: number;

  constructor(private readonly stops: readonly string[]) {
    this.holdback = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  /** Adds text; returns what is safe to emit now and whether a stop string was hit. */
  push(text: string): { emit: string; stopped: boolean } {
    this.buffer += text;
    let firstStop = -1;
    for (const stop of this.stops) {
      if (stop.length === 0) continue;
      const index = this.buffer.indexOf(stop);
      if (index !== -1 && (firstStop === -1 || index < firstStop)) firstStop = index;
    }
    if (firstStop !== -1) {
      const emit = this.buffer.slice(0, firstStop);
      this.buffer = "";
      return { emit, stopped: true };
    }
    let cut = Math.max(0, this.buffer.length - this.holdback);
    // Never split a surrogate pair between two chunks.
    if (cut > 0 && cut < this.buffer.length && isHighSurrogate(this.buffer.charCodeAt(cut - 1))) cut -= 1;
    const emit = this.buffer.slice(0, cut);
    this.buffer = this.buffer.slice(cut);
    return { emit, stopped: false };
  }

  /** The held-back remainder, released when generation ends for another reason. */
  flush(): string {
    const rest = this.buffer;
    this.buffer = "";
    return rest;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
