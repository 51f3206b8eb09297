import type { LlamaModel, Token } from "node-llama-cpp";

/** Tokens of context for detokenising the next piece: node-llama-cpp uses at most the last 8 it is given. */
const CONTEXT_TOKENS = 8;

/**
 * Turns generated tokens into text incrementally. A token may end in the middle of a UTF-8 character
 * (byte-fallback tokens), so text is only released once it decodes cleanly; the preceding tokens are
 * passed as context because SentencePiece detokenization depends on them (leading spaces).
 */
export class TokenTextStream {
  private readonly pending: Token[] = [];
  /** The last CONTEXT_TOKENS tokens before the pending ones (all node-llama-cpp's detokenizer looks at). */
  private readonly history: Token[];

  /** `context` = the tokens before the generated ones (the prompt), so the first piece keeps its space. */
  constructor(
    private readonly model: LlamaModel,
    context: readonly Token[] = [],
  ) {
    this.history = context.slice(-CONTEXT_TOKENS);
  }

  /** Returns the newly completed text (possibly empty). */
  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, false, this.history);
    if (text.endsWith("\uFFFD") && this.pending.length < 4) return "";
    this.history.push(...this.pending);
    if (this.history.length > CONTEXT_TOKENS) this.history.splice(0, this.history.length - CONTEXT_TOKENS);
    this.pending.length = 0;
    return text;
  }
}

/**
 * Finds stop strings in text that arrives piece by piece, scanning only what can still complete one. It holds
 * back the longest tail that is the beginning of some stop string (and nothing else), and stops at the first
 * stop string to complete; when several complete at the same character, the longest (the one starting
 * first) wins. The result does not depend on where the pieces were split. The emitted text never contains a
 * stop string.
 */
export class StopStringMatcher {
  /** The held-back tail: the longest suffix of the text so far that is a proper prefix of a stop string. */
  private held = "";
  private readonly stops: readonly string[];
  /** Every proper prefix of every stop string, to tell what to hold back. */
  private readonly prefixes = new Set<string>();
  /** First UTF-16 code units of the stop strings: a tail can only be held back from one of these. */
  private readonly firstUnits = new Set<number>();
  private readonly longest: number;
  /** The stop string that ended the text, once one has (then `push` must not be called again). */
  matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((stop) => stop.length > 0);
    this.longest = Math.max(0, ...this.stops.map((stop) => stop.length));
    for (const stop of this.stops) {
      this.firstUnits.add(stop.charCodeAt(0));
      for (let length = 1; length < stop.length; length++) this.prefixes.add(stop.slice(0, length));
    }
  }

  /** Adds text; returns what is safe to emit now. Sets `matched` when a stop string completed. */
  push(text: string): string {
    if (this.stops.length === 0) return text;
    const window = this.held + text;
    // A stop string that completes now ends inside `text` and starts inside the held tail or after it: an
    // occurrence starting before the tail would make a longer held tail.
    let cut = -1;
    let end = Number.POSITIVE_INFINITY;
    for (const stop of this.stops) {
      const at = window.indexOf(stop);
      if (at === -1) continue;
      const stopEnd = at + stop.length;
      if (stopEnd < end || (stopEnd === end && at < cut)) {
        end = stopEnd;
        cut = at;
        this.matched = stop;
      }
    }
    if (cut !== -1) {
      this.held = "";
      return window.slice(0, cut);
    }
    const from = Math.max(0, window.length - this.longest + 1);
    let keep = window.length;
    for (let i = from; i < window.length; i++) {
      if (this.firstUnits.has(window.charCodeAt(i)) && this.prefixes.has(window.slice(i))) {
        keep = i;
        break;
      }
    }
    // Never split a surrogate pair between two chunks (only a stop string starting with a lone low surrogate
    // could ask for it).
    if (keep > 0 && keep < window.length && isHighSurrogate(window.charCodeAt(keep - 1))) keep -= 1;
    this.held = window.slice(keep);
    return keep === window.length ? window : window.slice(0, keep);
  }

  /** The held-back remainder, released when generation ends for another reason. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
