import { existsSync, readFileSync } from "node:fs";
import {
  JinjaTemplateChatWrapper,
  LlamaText,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type GbnfJsonSchema,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";

/** A function call the assistant made earlier in the conversation, with the result the client sent back. */
export interface ChatToolCall {
  readonly name: string;
  readonly arguments: unknown;
  readonly result: unknown;
}

export type ChatTurn =
  | { readonly role: "system" | "user"; readonly content: string }
  | { readonly role: "assistant"; readonly content: string; readonly toolCalls?: readonly ChatToolCall[] };

/** A function the model may call: documented in the prompt by the chat wrapper. */
export interface ChatFunction {
  readonly description?: string;
  readonly parameters?: Readonly<Record<string, unknown>>;
}

export interface ChatPrompt {
  readonly tokens: Token[];
  /** The prompt as text with special tokens, to append to (a forced function call's prefix). */
  readonly text: LlamaText;
  readonly stopTokens: Set<Token>;
  readonly stopStrings: string[];
}

/** `--chat-template` takes Jinja text or a path to a file holding it. */
export function readChatTemplateOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return existsSync(value) ? readFileSync(value, "utf8") : value;
}

/**
 * The model's own chat template from GGUF metadata, unless the operator passed one (for models without a
 * template node-llama-cpp would otherwise guess a wrapper).
 */
export function resolveChatFormat(model: LlamaModel, jinjaTemplate: string | undefined): ChatWrapper {
  if (jinjaTemplate !== undefined) return new JinjaTemplateChatWrapper({ template: jinjaTemplate });
  return resolveChatWrapper(model) ?? new JinjaTemplateChatWrapper({ template: FALLBACK_CHATML_TEMPLATE });
}

const FALLBACK_CHATML_TEMPLATE =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

export function buildChatPrompt(
  model: LlamaModel,
  format: ChatWrapper,
  turns: readonly ChatTurn[],
  functions?: Readonly<Record<string, ChatFunction>>,
): ChatPrompt {
  const history: ChatHistoryItem[] = turns.map((turn) => {
    if (turn.role !== "assistant") return { type: turn.role, text: turn.content };
    const calls = (turn.toolCalls ?? []).map((call) => ({
      type: "functionCall" as const,
      name: call.name,
      params: call.arguments,
      result: call.result,
    }));
    return { type: "model", response: [...(turn.content.length > 0 ? [turn.content] : []), ...calls] };
  });
  const last = history.at(-1);
  // Generation continues a model turn: open one unless the client sent a partial assistant message.
  if (last?.type !== "model") history.push({ type: "model", response: [] });
  const state = format.generateContextState({
    chatHistory: history,
    ...(functions ? { availableFunctions: toChatModelFunctions(functions), documentFunctionParams: true } : {}),
  });
  const stopTokens = new Set<Token>();
  const stopStrings: string[] = [];
  for (const trigger of state.stopGenerationTriggers) {
    // A trigger that starts with a real special token of this model ends on that token; anything else
    // (including special-token text the vocabulary lacks) is matched as a plain stop string.
    const text = LlamaText(trigger);
    const first = text.tokenize(model.tokenizer)[0];
    if (first !== undefined && model.isSpecialToken(first)) {
      stopTokens.add(first);
    } else {
      const plain = text.toString();
      if (plain.length > 0) stopStrings.push(plain);
    }
  }
  return { tokens: state.contextText.tokenize(model.tokenizer), text: state.contextText, stopTokens, stopStrings };
}

function toChatModelFunctions(functions: Readonly<Record<string, ChatFunction>>): ChatModelFunctions {
  const result: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  for (const [name, fn] of Object.entries(functions)) {
    result[name] = {
      ...(fn.description !== undefined ? { description: fn.description } : {}),
      ...(fn.parameters !== undefined ? { params: fn.parameters as GbnfJsonSchema } : {}),
    };
  }
  return result;
}
