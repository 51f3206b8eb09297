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

  /**
   * Continues at `offset` with a fresh decoder: after the echoed prompt, the generated text starts exactly at
   * the prompt's length even when the tokenizer did not reproduce the prompt byte for byte (SentencePiece
   * models prepend a space to the first word).
   */
  restartAt(offset: number): void {
    this.decoder = new TextDecoder("utf-8");
    this.offset = offset;
  }

  build(entries: readonly Entry[]): CompletionLogprobs {
    const result: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const entry of entries) {
      result.tokens.push(entry.token);
      result.token_logprobs.push(entry.logprob);
      result.top_logprobs.push(entry.top === null ? null : topDictionary(entry, entry.top));
      result.text_offset.push(this.offset);
      if (!entry.special) this.offset += this.decoder.decode(Uint8Array.from(entry.bytes), { stream: true }).length;
    }
    return result;
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
