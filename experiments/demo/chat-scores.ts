import { generateText, mapConcurrently, startInProcessServer } from "../../src/tasks/run-eval.js";
import { TASKS } from "../../src/tasks/tasks.js";
import { isChatExample, promptMessages, TASK_IDS, type TaskId } from "../../src/tasks/task.js";
import { chatRendering } from "./chat-rendering.js";

/**
 * The completion tasks (math, code, nlu) asked in their chat form (chat-rendering.ts) through
 * /v1/chat/completions of a real in-process server, greedy, and scored by each task's own scorer on the original
 * example. `eval` scores each task in its native format only; this is the other half of what the demo adapters
 * are trained on. Safety is a chat task already, so `eval` covers it.
 */
export interface ChatFormScore {
  readonly task: TaskId;
  readonly adapter: string | null;
  readonly format: "chat";
  readonly accuracy: number;
  readonly examples: number;
}

export interface ChatFormOptions {
  readonly model: string;
  readonly adaptersDir: string;
  /** Test split seed (`eval --seed`). */
  readonly seed: number;
  /** Examples per task; 0 = the task's default test size (as `eval`). */
  readonly limit: number;
  readonly threads?: number;
}

export const CHAT_FORM_TASKS: readonly TaskId[] = TASK_IDS.filter((id) => TASKS[id].format === "completion");

/** Scores every completion task without adapter and with its own adapter, in chat form. */
export async function scoreChatForm(options: ChatFormOptions): Promise<ChatFormScore[]> {
  const server = await startInProcessServer({
    model: options.model,
    adaptersDir: options.adaptersDir,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  try {
    const scores: ChatFormScore[] = [];
    for (const task of CHAT_FORM_TASKS.map((id) => TASKS[id])) {
      const size = options.limit > 0 ? options.limit : task.defaultTestSize;
      const examples = task.generate(options.seed, { train: 0, test: size }).test;
      for (const adapter of [null, task.id]) {
        const correct = await mapConcurrently(examples, 4, async (example) => {
          if (isChatExample(example)) throw new Error(`${example.id}: a completion task produced a chat example`);
          const output = await generateText(
            { id: example.id, messages: promptMessages(chatRendering(example)), maxTokens: task.maxTokens },
            server,
            { adapter: adapter === null ? [] : [{ name: adapter, weight: 1 }] },
          );
          return task.score(example, output);
        });
        const hits = correct.filter(Boolean).length;
        scores.push({
          task: task.id,
          adapter,
          format: "chat",
          accuracy: examples.length === 0 ? 0 : hits / examples.length,
          examples: examples.length,
        });
      }
    }
    return scores;
  } finally {
    await server.close();
  }
}
