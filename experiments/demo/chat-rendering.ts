import { isChatExample, type ChatExample, type ChatMessage, type CompletionExample, type Example } from "../../src/tasks/task.js";

/**
 * The chat form of a completion task's prompt, as a chat client would ask it: the question without the
 * completion scaffolding (the leading `Q: ` and the trailing `\nA:` answer cue, which the chat template's
 * assistant turn replaces), answered by the completion without its leading space.
 * `Q: Tom has 8 balls and buys 6 more. How many balls does Tom have?\nA:` -> user
 * `Tom has 8 balls and buys 6 more. How many balls does Tom have?`, assistant `8 + 6 = 14`.
 *
 * The demo adapters train on both forms: trained on the completion form only, an adapter answers noise when
 * the same question arrives through /v1/chat/completions (the template wraps it in turn markers it never saw).
 */
export function chatQuestion(prompt: string): string {
  return prompt.replace(/^Q: /, "").replace(/\nA:$/, "");
}

export function chatRendering(example: CompletionExample): ChatExample {
  const messages: ChatMessage[] = [
    { role: "user", content: chatQuestion(example.prompt) },
    { role: "assistant", content: example.completion.trimStart() },
  ];
  return {
    id: `${example.id}-chat`,
    task: example.task,
    ...(example.group !== undefined ? { group: example.group } : {}),
    ...(example.meta !== undefined ? { meta: example.meta } : {}),
    messages,
  };
}

/** Each completion example followed by its chat rendering; chat examples stay as they are (they have one form). */
export function withChatRenderings(examples: readonly Example[]): Example[] {
  return examples.flatMap((e) => (isChatExample(e) ? [e] : [e, chatRendering(e)]));
}
