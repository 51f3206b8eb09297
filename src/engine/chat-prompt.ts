import { existsSync, readFileSync } from "node:fs";
import {
  JinjaTemplateChatWrapper,
  LlamaText,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";

export interface ChatTurn {
  readonly role: "system" | "user" | "assistant";
  readonly content: string;
}

export interface ChatPrompt {
  readonly tokens: Token[];
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

export function buildChatPrompt(model: LlamaModel, format: ChatWrapper, turns: readonly ChatTurn[]): ChatPrompt {
  const history: ChatHistoryItem[] = turns.map((turn) => {
    if (turn.role === "assistant") return { type: "model", response: [turn.content] };
    return { type: turn.role, text: turn.content };
  });
  const last = history.at(-1);
  // Generation continues a model turn: open one unless the client sent a partial assistant message.
  if (last?.type !== "model") history.push({ type: "model", response: [] });
  const state = format.generateContextState({ chatHistory: history });
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
  return { tokens: state.contextText.tokenize(model.tokenizer), stopTokens, stopStrings };
}
