import { type ChatWrapper, JinjaTemplateChatWrapper, type LlamaModel, LlamaText, type Token } from "node-llama-cpp";

/**
 * How a chat template writes a function call: `prefix` name `paramsPrefix` {JSON arguments} ... node-llama-cpp
 * defines one for every chat wrapper it knows (for ChatML, which has no official tool syntax, its generic
 * `||call: name({...})`, documented to the model in the system message). A raw Jinja template (given with
 * --chat-template, or a model node-llama-cpp does not recognise) has one only if the template renders tools.
 */
export interface ToolCallFormat {
  /** What the model writes to start a call, up to the function's name. */
  readonly prefix: LlamaText;
  /** What comes between the name and the JSON arguments. */
  readonly paramsPrefix: LlamaText;
  /** Texts that mean "the model starts a call" when it writes them by itself (tool_choice auto)... */
  readonly triggerStrings: readonly string[];
  /** ...or the special token that does, when the prefix starts with one. */
  readonly triggerToken: Token | undefined;
}

/** The chat template's tool-call format, or null when it has none. */
export function toolCallFormat(model: LlamaModel, format: ChatWrapper): ToolCallFormat | null {
  if (format instanceof JinjaTemplateChatWrapper && !format.usingJinjaFunctionCallTemplate) return null;
  const { call, parallelism } = format.settings.functions;
  const prefix = LlamaText([parallelism?.call.sectionPrefix ?? "", call.prefix]);
  const first = prefix.tokenize(model.tokenizer)[0];
  const triggerToken = first !== undefined && model.isSpecialToken(first) ? first : undefined;
  const texts = [prefix, ...(call.prefixAlternateMatches ?? [])].map((t) => LlamaText(t).toString().trim());
  const triggerStrings = triggerToken === undefined ? [...new Set(texts.filter((t) => t.length > 0))] : [];
  return { prefix, paramsPrefix: LlamaText(call.paramsPrefix), triggerStrings, triggerToken };
}

/** Tokens of `prompt` followed by `tail` (text the model is made to have written: a call's prefix and name). */
export function continuedPrompt(model: LlamaModel, prompt: LlamaText, tail: readonly (LlamaText | string)[]): Token[] {
  return LlamaText([prompt, ...tail]).tokenize(model.tokenizer);
}
