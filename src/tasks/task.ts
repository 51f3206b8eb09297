/**
 * Synthetic tasks shaped like the LoRI paper's four (math, code, NLU, safety), small enough for a tiny model.
 * Every example is also a training record `lori-server train` reads (docs/training.md): a completion example is
 * `{"prompt", "completion"}`, a chat example `{"messages": [...]}` whose last turn is the assistant's answer.
 * The extra fields (`id`, `task`, `group`, `meta`) are ignored by the trainer.
 */

export type TaskId = "math" | "code" | "nlu" | "safety";

export const TASK_IDS: readonly TaskId[] = ["math", "code", "nlu", "safety"];

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant";
  readonly content: string;
}

interface ExampleBase {
  /** `<task>-<split>-<index>`, unique within one generated split. */
  readonly id: string;
  readonly task: TaskId;
  /** A sub-population reported separately by `eval` (safety: "harmful" / "benign"). */
  readonly group?: string;
  /** What the scorer needs beyond the text (code: the hidden tests). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

export interface CompletionExample extends ExampleBase {
  readonly prompt: string;
  /** The reference answer, with its leading space (`" 7"`), as the model should continue the prompt. */
  readonly completion: string;
}

export interface ChatExample extends ExampleBase {
  /** The conversation; the last message is the assistant's reference answer. */
  readonly messages: readonly ChatMessage[];
}

export type Example = CompletionExample | ChatExample;

export type Split = "train" | "dev" | "test";

export interface SplitSizes {
  readonly train: number;
  /** Dev examples (selection of learning rates, steps, merge weights); default 0. */
  readonly dev?: number;
  readonly test: number;
}

export interface Splits {
  readonly train: Example[];
  /** Empty unless `SplitSizes.dev` asked for some. */
  readonly dev: Example[];
  readonly test: Example[];
}

export interface Task {
  readonly id: TaskId;
  /** How `eval` queries the server: `/v1/completions` or `/v1/chat/completions`. */
  readonly format: "completion" | "chat";
  /** One line for `--help` and docs. */
  readonly summary: string;
  /** Greedy decoding budget for `eval`. */
  readonly maxTokens: number;
  /** Stop sequences for `eval` (completion tasks stop at the end of the answer line). */
  readonly stop?: readonly string[];
  /** Test examples `eval` uses without `--limit`. */
  readonly defaultTestSize: number;
  /** The most distinct test and dev examples the generator can make for any seed (with a margin below the item space). */
  readonly maxSizes: { readonly test: number; readonly dev: number };
  /** Labels of the groups `eval` reports separately, e.g. `{ harmful: "refused" }`. */
  readonly groupLabels?: Readonly<Record<string, string>>;
  /**
   * Deterministic: the same seed gives the same data. Train, dev and test never share a prompt, for any seeds
   * (the split of a prompt is a fixed hash of it), and a split of a seed does not depend on the other sizes.
   */
  generate(seed: number, sizes: SplitSizes): Splits;
  /** Exact: whether `output` (the model's generated text) is a correct answer to `example`. */
  score(example: Example, output: string): boolean | Promise<boolean>;
}

export function isChatExample(example: Example): example is ChatExample {
  return "messages" in example;
}

/** The reference answer: the completion, or the last (assistant) message. */
export function referenceAnswer(example: Example): string {
  return isChatExample(example) ? (example.messages.at(-1)?.content ?? "") : example.completion;
}

/** The conversation sent to the server: every message but the reference answer. */
export function promptMessages(example: ChatExample): ChatMessage[] {
  return example.messages.slice(0, -1);
}

/** JSONL, one example a line, as `lori-server train --data` reads it. */
export function toJsonl(examples: readonly Example[]): string {
  return examples.map((e) => JSON.stringify(e)).join("\n") + (examples.length > 0 ? "\n" : "");
}
