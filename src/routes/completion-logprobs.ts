import type { PromptPositionLogprobs, TokenLogprob } from "../engine/generation-types.js";

type Entry = PromptPositionLogprobs;

/** The legacy completions `logprobs` object (one per choice, or per streamed chunk). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/**
 * Builds completions logprobs for the tokens of one choice, in order, across any number of calls (one per
 * streamed chunk), so that `text_offset` stays an index into the choice's whole text.
 *
 * `text_offset[i]` is where token i's text starts: the length (in UTF-16 units, as JS and JSON count) of the
 * text decoded from all earlier tokens' bytes. A token that continues a character begun by an earlier token
 * (byte-level tokens) points at that character. Control tokens (BOS, end of turn) add no text.
 */
export class CompletionLogprobsBuilder {
  private decoder = new TextDecoder("utf-8");
  private offset: number;

  constructor(startOffset = 0) {
    this.offset = startOffset;
  }

  /** Continues at `offset` with a fresh decoder (after an echoed prompt: at the prompt text's length). */
  restartAt(offset: number): void {
    this.decoder = new TextDecoder("utf-8");
    this.offset = offset;
  }

  build(entries: readonly Entry[]): CompletionLogprobs {
    return this.buildDecoding(entries).logprobs;
  }

  /**
   * The echoed prompt's tokens, with offsets into `promptText`; the generated tokens continue after it.
   * SentencePiece models put a space before the first word that the prompt text does not have: when the
   * tokens spell the prompt with extra text in front, offsets are moved back by that much.
   */
  buildPrompt(entries: readonly Entry[], promptText: string): CompletionLogprobs {
    const start = this.offset;
    const { logprobs, text } = this.buildDecoding(entries);
    const spelled = text + this.decoder.decode();
    const surplus = spelled.length - promptText.length;
    if (surplus > 0 && spelled.endsWith(promptText)) {
      logprobs.text_offset = logprobs.text_offset.map((offset) => Math.max(start, offset - surplus));
    }
    this.restartAt(start + promptText.length);
    return logprobs;
  }

  private buildDecoding(entries: readonly Entry[]): { logprobs: CompletionLogprobs; text: string } {
    const logprobs: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    let text = "";
    for (const entry of entries) {
      logprobs.tokens.push(entry.token);
      logprobs.token_logprobs.push(entry.logprob);
      logprobs.top_logprobs.push(entry.top === null ? null : topDictionary(entry, entry.top));
      logprobs.text_offset.push(this.offset);
      if (entry.special) continue;
      const piece = this.decoder.decode(Uint8Array.from(entry.bytes), { stream: true });
      text += piece;
      this.offset += piece.length;
    }
    return { logprobs, text };
  }
}

/**
 * The top alternatives as `{token: logprob}`, plus the chosen token when it is not among them (OpenAI: "the API
 * will always return the logprob of the sampled token, so there may be up to logprobs+1 elements"). Distinct
 * tokens have distinct names (partial characters are spelled `bytes:\xNN`); should two still share a name, the
 * more likely one is kept.
 */
function topDictionary(entry: Entry, top: readonly TokenLogprob[]): Record<string, number> {
  // No prototype: a token may well be spelled "__proto__".
  const dictionary = Object.create(null) as Record<string, number>;
  for (const alternative of top) {
    if (!Object.hasOwn(dictionary, alternative.token)) dictionary[alternative.token] = alternative.logprob;
  }
  if (entry.logprob !== null && !Object.hasOwn(dictionary, entry.token)) dictionary[entry.token] = entry.logprob;
  return dictionary;
}
