import type { GgufMetadataValue } from "../gguf/gguf-types.js";

// A byte-level BPE vocabulary with no merges: every UTF-8 byte is one token, so any text (emoji, CJK,
// invalid-looking byte runs) tokenizes and detokenizes losslessly, and the vocabulary stays tiny.
// Stored as llama.cpp's "gpt2" tokenizer model, whose tokens spell bytes with GPT-2's byte-to-unicode
// alphabet (llama.cpp decodes that alphabet back to bytes when detokenizing).

/** llama.cpp token types (llama_token_type in llama-vocab.h). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export const BOS_TOKEN = "<|bos|>";
/**
 * llama.cpp rebuilds its end-of-generation set at load time from token TEXT only (a fixed list of names such as
 * <|endoftext|>, <|im_end|>, <|eot_id|>), then adds the EOS id with the warning "special_eos_id is not in
 * special_eog_ids - the tokenizer config may be incorrect". No metadata key can declare the set, so the EOS token
 * carries a name from that list. (Our files before this used "<|eos|>", same id 257.)
 */
export const EOS_TOKEN = "<|endoftext|>";
export const IM_START_TOKEN = "<|im_start|>";
export const IM_END_TOKEN = "<|im_end|>";
/** 256 byte tokens + the four special tokens above. */
export const BYTE_TOKENIZER_BASE_VOCAB = 260;

/** ChatML, the format node-llama-cpp recognises as its ChatMLChatWrapper. */
export const CHATML_TEMPLATE =
  "{{ bos_token }}" +
  "{% for message in messages %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Everything llama.cpp needs to rebuild a vocabulary; written as `tokenizer.ggml.*` metadata. */
export interface GgufTokenizerSpec {
  model: string;
  pre: string;
  tokens: string[];
  tokenTypes: number[];
  merges: string[];
  bosId: number;
  eosId: number;
  /** End of turn: generation stops here too (llama.cpp adds it to its end-of-generation set). */
  eotId?: number;
  addBos: boolean;
  addEos: boolean;
}

/** Bytes 0-255 as GPT-2 spells them: printable Latin-1 stands for itself, the rest maps to U+0100 onward. */
export function gpt2ByteAlphabet(): string[] {
  const alphabet: string[] = new Array(256);
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    alphabet[byte] = String.fromCodePoint(printable ? byte : next++);
  }
  return alphabet;
}

/**
 * The byte tokenizer: ids 0-255 are the bytes (id = byte value), then <|bos|>, <|endoftext|> (EOS), <|im_start|>,
 * <|im_end|>, then `<|reserved_N|>` control tokens up to `vocabSize` (for models that want a bigger vocab).
 */
export function createByteTokenizer(vocabSize = BYTE_TOKENIZER_BASE_VOCAB): GgufTokenizerSpec {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < BYTE_TOKENIZER_BASE_VOCAB) {
    throw new Error(`vocab size must be an integer >= ${BYTE_TOKENIZER_BASE_VOCAB} (256 bytes + 4 specials), got ${vocabSize}`);
  }
  const specials = [BOS_TOKEN, EOS_TOKEN, IM_START_TOKEN, IM_END_TOKEN];
  const reserved = Array.from({ length: vocabSize - BYTE_TOKENIZER_BASE_VOCAB }, (_, i) => `<|reserved_${i}|>`);
  const tokens = [...gpt2ByteAlphabet(), ...specials, ...reserved];
  return {
    model: "gpt2",
    // "qwen2" selects a GPT-2-style pre-tokenizer regex with clean_up_tokenization_spaces off. The plain
    // "default" turns it on, and llama.cpp then deletes the space in " ." / " ," when detokenizing,
    // which breaks lossless round trips.
    pre: "qwen2",
    tokens,
    tokenTypes: tokens.map((_, id) => (id < 256 ? TOKEN_TYPE.normal : TOKEN_TYPE.control)),
    merges: [],
    bosId: 256,
    eosId: 257,
    eotId: 259,
    addBos: true,
    addEos: false,
  };
}

/** The `tokenizer.ggml.*` (and optional `tokenizer.chat_template`) metadata entries for a tokenizer. */
export function tokenizerMetadata(tokenizer: GgufTokenizerSpec, chatTemplate?: string): Array<[string, GgufMetadataValue]> {
  const entries: Array<[string, GgufMetadataValue]> = [
    ["tokenizer.ggml.model", { type: "string", value: tokenizer.model }],
    ["tokenizer.ggml.pre", { type: "string", value: tokenizer.pre }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokenizer.tokens }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: tokenizer.tokenTypes }],
    // llama.cpp refuses a gpt2 vocabulary without this key, even when there is nothing to merge.
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", value: tokenizer.merges }],
    ["tokenizer.ggml.bos_token_id", { type: "uint32", value: tokenizer.bosId }],
    ["tokenizer.ggml.eos_token_id", { type: "uint32", value: tokenizer.eosId }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: tokenizer.addBos }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: tokenizer.addEos }],
  ];
  if (tokenizer.eotId !== undefined) {
    entries.push(["tokenizer.ggml.eot_token_id", { type: "uint32", value: tokenizer.eotId }]);
  }
  if (chatTemplate !== undefined) entries.push(["tokenizer.chat_template", { type: "string", value: chatTemplate }]);
  return entries;
}
