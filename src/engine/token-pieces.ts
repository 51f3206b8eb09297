import { LlamaVocabularyType, type LlamaModel, type Token } from "node-llama-cpp";
import { gpt2ByteAlphabet } from "../model/byte-tokenizer.js";

/** What logprobs report about one token: its own bytes, and a name for it that is always a valid string. */
export interface TokenPiece {
  /**
   * The token's text exactly as it appears in generated text, leading space included. A token whose bytes are
   * not valid UTF-8 on their own (part of a character) is named `bytes:\xNN...` like OpenAI does, so two
   * different partial-character tokens never share a name.
   */
  readonly text: string;
  /** The token's own bytes (for a control token: the bytes of its name, e.g. `<|im_end|>`). */
  readonly bytes: readonly number[];
  /** Control tokens (BOS, end of turn...) print their name in logprobs but add no text to the output. */
  readonly special: boolean;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const gpt2ByteOf = new Map(gpt2ByteAlphabet().map((char, byte) => [char, byte]));
const SPM_SPACE = "\u2581";

/**
 * A token's own bytes. `model.detokenize([token])` cannot give them: the native binding returns a JS string, so
 * bytes that are not valid UTF-8 come back as U+FFFD, and SentencePiece models drop the leading space of the
 * first token. So, like llama.cpp's token_to_piece, the bytes are read from the vocabulary entry for the two
 * vocabulary kinds whose spelling we know (SentencePiece: `▁` is a space and `<0xNN>` a raw byte; GPT-2 BPE:
 * the byte-to-unicode alphabet), and everything else falls back to the detokenizer.
 */
export function tokenPiece(model: LlamaModel, token: Token): TokenPiece {
  // Logprobs describe every generated token and its top alternatives: read each token's entry once per model.
  let cache = pieceCache.get(model);
  if (!cache) pieceCache.set(model, (cache = new Map()));
  let piece = cache.get(token);
  if (!piece) cache.set(token, (piece = Object.freeze(readTokenPiece(model, token))));
  return piece;
}

/** At most one entry per vocabulary token, dropped with the model. */
const pieceCache = new WeakMap<LlamaModel, Map<Token, TokenPiece>>();

function readTokenPiece(model: LlamaModel, token: Token): TokenPiece {
  const attributes = model.getTokenAttributes(token);
  if (attributes.control || model.isEogToken(token)) {
    const name = model.detokenize([token], true);
    return { text: name, bytes: Object.freeze([...Buffer.from(name, "utf8")]), special: true };
  }
  const bytes = Object.freeze(vocabularyBytes(model, token, attributes) ?? [...Buffer.from(model.detokenize([token], true), "utf8")]);
  return { text: displayText(bytes), bytes, special: false };
}

/** The UTF-8 text of `bytes`, or OpenAI's `bytes:\xe2\x80` spelling when they are not valid UTF-8 alone. */
export function displayText(bytes: readonly number[]): string {
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return `bytes:${bytes.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}`;
  }
}

function vocabularyBytes(model: LlamaModel, token: Token, attributes: ReturnType<LlamaModel["getTokenAttributes"]>): number[] | undefined {
  const spelling = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.[token];
  if (typeof spelling !== "string") return undefined;
  // User-defined tokens are copied verbatim by llama.cpp, whatever the vocabulary kind.
  if (attributes.userDefined) return [...Buffer.from(spelling, "utf8")];
  switch (model.vocabularyType) {
    case LlamaVocabularyType.spm:
    case LlamaVocabularyType.ugm: {
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(spelling);
      if (attributes.byte && byte) return [parseInt(byte[1]!, 16)];
      if (attributes.normal) return [...Buffer.from(spelling.replaceAll(SPM_SPACE, " "), "utf8")];
      return undefined;
    }
    case LlamaVocabularyType.bpe: {
      if (!attributes.normal) return undefined;
      const bytes: number[] = [];
      for (const char of spelling) {
        const byte = gpt2ByteOf.get(char);
        if (byte === undefined) return undefined;
        bytes.push(byte);
      }
      return bytes;
    }
    default:
      return undefined;
  }
}
