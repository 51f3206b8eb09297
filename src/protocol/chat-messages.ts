import type { ChatToolCall, ChatTurn } from "../engine/chat-prompt.js";
import { apiErrors } from "../errors/api-error.js";
import type { ChatMessage } from "./chat-schema.js";

/**
 * OpenAI messages as chat turns. An assistant message's `tool_calls` are paired with the `tool` messages that
 * answer them (by `tool_call_id`), since chat templates write each call together with its result.
 */
export function toChatTurns(messages: readonly ChatMessage[]): ChatTurn[] {
  const results = new Map<string, unknown>();
  for (const [index, message] of messages.entries()) {
    if (message.role !== "tool") continue;
    if (results.has(message.tool_call_id)) {
      throw apiErrors.invalidField(`messages.${index}.tool_call_id`, `Tool call '${message.tool_call_id}' is answered twice.`);
    }
    results.set(message.tool_call_id, parseResult(textOf(message.content)));
  }
  const answered = new Set<string>();
  const turns: ChatTurn[] = [];
  for (const [index, message] of messages.entries()) {
    if (message.role === "tool") {
      if (!answered.has(message.tool_call_id)) {
        throw apiErrors.invalidField(
          `messages.${index}.tool_call_id`,
          `No earlier assistant message has a tool call with id '${message.tool_call_id}'.`,
        );
      }
      continue;
    }
    if (message.role !== "assistant") {
      turns.push({ role: message.role === "developer" ? "system" : message.role, content: textOf(message.content) });
      continue;
    }
    const toolCalls: ChatToolCall[] = (message.tool_calls ?? []).map((call, callIndex) => {
      if (!results.has(call.id)) {
        throw apiErrors.invalidField(
          `messages.${index}.tool_calls.${callIndex}`,
          `Tool call '${call.id}' has no tool message with its result.`,
        );
      }
      answered.add(call.id);
      return {
        name: call.function.name,
        arguments: parseArguments(call.function.arguments, index, callIndex),
        result: results.get(call.id),
      };
    });
    turns.push({ role: "assistant", content: textOf(message.content ?? ""), ...(toolCalls.length > 0 ? { toolCalls } : {}) });
  }
  return turns;
}

function textOf(content: string | ReadonlyArray<{ text: string }>): string {
  return typeof content === "string" ? content : content.map((part) => part.text).join("");
}

function parseArguments(text: string, index: number, callIndex: number): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw apiErrors.invalidField(
      `messages.${index}.tool_calls.${callIndex}.function.arguments`,
      "Tool call arguments must be a JSON string.",
    );
  }
}

/** A tool result is shown to the model as JSON when it is JSON, else as the text it is. */
function parseResult(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
