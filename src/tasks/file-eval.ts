import type { TrainingRecord } from "../train/training-data.js";
import { EvalError, generateText, mapConcurrently, type EvalTarget, type EvaluateOptions, type ExampleOutcome } from "./run-eval.js";
import type { ChatMessage } from "./task.js";

/**
 * `eval --data FILE`: scores a user's own test file, JSONL in the training formats (docs/training.md). Each record
 * is a prompt and a reference answer: a completion (or Alpaca) record's prompt and completion, a chat record's
 * messages before its last turn and that turn (which must be the assistant's). The score is the exact match of the
 * greedy completion against the reference, both trimmed of surrounding whitespace.
 */

export interface FileExample {
  /** `line N` of the file. */
  readonly id: string;
  readonly prompt?: string;
  readonly messages?: readonly ChatMessage[];
  readonly reference: string;
}

export interface FileReport {
  readonly file: string;
  readonly examples: number;
  readonly correct: number;
  /** correct / examples, in [0, 1]. */
  readonly exact_match: number;
  readonly outcomes: readonly ExampleOutcome[];
}

/** The scorable examples of a data file; `{"text"}` records and chats that do not end with the assistant are refused. */
export function fileExamples(records: readonly TrainingRecord[], source: string): FileExample[] {
  return records.map((record) => {
    const id = `line ${record.line}`;
    if (record.kind === "completion") return { id, prompt: record.prompt, reference: record.completion };
    if (record.kind === "text") {
      throw new EvalError(
        `${source} line ${record.line}: a {"text"} record has no reference answer; eval --data scores prompt/completion, Alpaca and chat records`,
      );
    }
    const last = record.messages.at(-1)!;
    if (last.role !== "assistant")
      throw new EvalError(`${source} line ${record.line}: the last message must be the assistant's reference answer`);
    return { id, messages: record.messages.slice(0, -1).map(({ role, content }) => ({ role, content })), reference: last.content };
  });
}

/** Exact match after trimming surrounding whitespace (a completion's leading space is part of how it is written). */
export function exactMatch(output: string, reference: string): boolean {
  return output.trim() === reference.trim();
}

export interface FileEvalOptions extends EvaluateOptions {
  /** Generation budget per example. */
  readonly maxTokens: number;
  readonly stop?: readonly string[];
}

/** Generates a greedy answer for every example through `target` and scores it by exact match. */
export async function evaluateFile(
  file: string,
  examples: readonly FileExample[],
  target: EvalTarget,
  options: FileEvalOptions,
): Promise<FileReport> {
  const outcomes = await mapConcurrently(examples, options.concurrency ?? 4, async (example): Promise<ExampleOutcome> => {
    const output = await generateText(
      {
        id: example.id,
        ...(example.messages ? { messages: example.messages } : { prompt: example.prompt ?? "" }),
        maxTokens: options.maxTokens,
        ...(options.stop ? { stop: options.stop } : {}),
      },
      target,
      options,
    );
    return { id: example.id, expected: example.reference, output, correct: exactMatch(output, example.reference) };
  });
  const correct = outcomes.filter((o) => o.correct).length;
  return { file, examples: outcomes.length, correct, exact_match: outcomes.length === 0 ? 0 : correct / outcomes.length, outcomes };
}
