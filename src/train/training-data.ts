import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { LlamaText, type ChatWrapper, type LlamaModel, type Token } from "node-llama-cpp";
import { completionPromptTokens } from "../engine/prompt-tokens.js";
import { buildChatPrompt, type ChatTurn } from "../engine/chat-prompt.js";
import type { TokenSequence } from "./token-shards.js";
import { mulberry32 } from "../util/mulberry32.js";

/**
 * Training data: JSONL in one of four formats, tokenized exactly as the server tokenizes requests.
 *
 * - chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight"?: 0|1}, ...]}`, rendered
 *   with the model's chat template through the server's own `buildChatPrompt`; each assistant turn's tokens plus
 *   its end-of-turn marker are supervised (OpenAI's `weight: 0` leaves a turn unsupervised).
 * - completion: `{"prompt": "...", "completion": "..."}`, as /v1/completions sees the prompt
 *   (BOS + tokenize(prompt)), then the completion tokens and EOS, supervised.
 * - alpaca: `{"instruction", "input"?, "output"}`, rendered with {@link ALPACA_PROMPT} as a completion record.
 * - text: `{"text": "..."}` (pretraining / continued pretraining): BOS + tokenize(text) with special tokens parsed
 *   + EOS, every token after the first supervised.
 */

export type TrainingRecord =
  | { readonly kind: "chat"; readonly line: number; readonly messages: readonly (ChatTurn & { readonly weight: number })[] }
  | { readonly kind: "completion"; readonly line: number; readonly prompt: string; readonly completion: string }
  | { readonly kind: "text"; readonly line: number; readonly text: string };

/** Thrown for malformed data; the message is one line naming the file and line number. */
export class TrainingDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TrainingDataError";
  }
}

/** Stanford Alpaca's prompt template (with and without an input); the output is the completion. */
export const ALPACA_PROMPT = {
  withInput:
    "Below is an instruction that describes a task, paired with an input that provides further context. " +
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
  withoutInput:
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
    "### Instruction:\n{instruction}\n\n### Response:\n",
} as const;

export function alpacaPrompt(instruction: string, input: string | undefined): string {
  const template = input ? ALPACA_PROMPT.withInput : ALPACA_PROMPT.withoutInput;
  return template.replace("{instruction}", () => instruction).replace("{input}", () => input ?? "");
}

const ROLES = new Set(["system", "user", "assistant"]);

/** Parses JSONL text (blank lines skipped). `source` names the file in error messages. */
export function parseTrainingJsonl(text: string, source: string): TrainingRecord[] {
  const records: TrainingRecord[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    if (raw.trim() === "") continue;
    const line = index + 1;
    const fail = (detail: string): never => {
      throw new TrainingDataError(`${source} line ${line}: ${detail}`);
    };
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      return fail(`invalid JSON (${(error as Error).message.split("\n")[0]})`);
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) fail("expected a JSON object");
    records.push(parseRecord(value as Record<string, unknown>, line, fail));
  }
  if (records.length === 0) throw new TrainingDataError(`${source}: no training records`);
  return records;
}

function parseRecord(obj: Record<string, unknown>, line: number, fail: (detail: string) => never): TrainingRecord {
  const str = (key: string, optional = false): string | undefined => {
    const v = obj[key];
    if (v === undefined && optional) return undefined;
    if (typeof v !== "string") return fail(`'${key}' must be a string`);
    return v;
  };
  if ("messages" in obj) {
    const messages = obj.messages;
    if (!Array.isArray(messages) || messages.length === 0) return fail("'messages' must be a non-empty array");
    const turns = messages.map((m: unknown, i) => {
      if (!m || typeof m !== "object") return fail(`messages[${i}] must be an object`);
      const { role, content, weight } = m as Record<string, unknown>;
      if (typeof role !== "string" || !ROLES.has(role)) return fail(`messages[${i}].role must be system, user or assistant`);
      if (typeof content !== "string") return fail(`messages[${i}].content must be a string`);
      if (weight !== undefined && weight !== 0 && weight !== 1) return fail(`messages[${i}].weight must be 0 or 1`);
      return { role: role as ChatTurn["role"], content, weight: (weight as number | undefined) ?? 1 };
    });
    if (!turns.some((t) => t.role === "assistant" && t.weight === 1)) return fail("no assistant message to learn from");
    return { kind: "chat", line, messages: turns };
  }
  if ("prompt" in obj || "completion" in obj) {
    const completion = str("completion")!;
    if (completion === "") fail("'completion' is empty");
    return { kind: "completion", line, prompt: str("prompt")!, completion };
  }
  if ("instruction" in obj || "output" in obj) {
    const output = str("output")!;
    if (output === "") fail("'output' is empty");
    return { kind: "completion", line, prompt: alpacaPrompt(str("instruction")!, str("input", true)), completion: output };
  }
  if ("text" in obj) {
    const text = str("text")!;
    if (text === "") fail("'text' is empty");
    return { kind: "text", line, text };
  }
  return fail("unknown record format (expected 'messages', 'prompt'/'completion', 'instruction'/'output' or 'text')");
}

export interface DataFile {
  readonly records: TrainingRecord[];
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
}

export async function readTrainingFile(path: string): Promise<DataFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new TrainingDataError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return {
    records: parseTrainingJsonl(bytes.toString("utf8"), basename(path)),
    name: basename(path),
    sha256: createHash("sha256").update(bytes).digest("hex"),
    bytes: bytes.length,
  };
}

/**
 * A pretraining document: BOS (when the model wants one) + tokenize(text) + EOS (when the model has one).
 * Special tokens are parsed because pretraining corpora carry rendered chat transcripts (`<|im_start|>user\n...`)
 * that must become the same control tokens the chat template produces, not their spelling in bytes.
 */
export function textTokens(model: LlamaModel, text: string): Token[] {
  const tokens = model.tokenize(text, true);
  const { bos, eos } = model.tokens;
  if (bos !== null && model.tokens.shouldPrependBosToken && tokens[0] !== bos) tokens.unshift(bos);
  if (eos !== null) tokens.push(eos);
  return tokens;
}

/** Text generated after a prompt: tokenized without the leading space a SentencePiece tokenizer would add. */
export function continuationTokens(model: LlamaModel, text: string): Token[] {
  return model.tokenize(text, false, "trimLeadingSpace");
}

/** The end-of-turn marker the server stops on: the template's first non-EOS stop trigger, else EOS. */
export function endOfTurnTokens(model: LlamaModel, format: ChatWrapper): Token[] {
  const state = format.generateContextState({
    chatHistory: [
      { type: "user", text: "" },
      { type: "model", response: [] },
    ],
  });
  const eos = model.tokens.eos;
  for (const trigger of state.stopGenerationTriggers) {
    const tokens = LlamaText(trigger).tokenize(model.tokenizer, "trimLeadingSpace");
    if (tokens.length > 0 && !(tokens.length === 1 && tokens[0] === eos)) return tokens;
  }
  if (eos === null) throw new TrainingDataError("the chat template has no end-of-turn marker and the model has no EOS token");
  return [eos];
}

export interface TokenizeOptions {
  readonly model: LlamaModel;
  /** Required for chat records (resolveChatFormat). */
  readonly chatFormat?: ChatWrapper;
}

/** Tokenizes records; a chat record yields one sequence, or several when its template is not prefix-stable. */
export function tokenizeRecords(records: readonly TrainingRecord[], options: TokenizeOptions): TokenSequence[] {
  const { model } = options;
  const out: TokenSequence[] = [];
  let eot: Token[] | undefined;
  for (const record of records) {
    if (record.kind === "text") {
      const tokens = textTokens(model, record.text);
      out.push({ tokens, supervised: tokens.map((_, i) => i > 0) });
      continue;
    }
    if (record.kind === "completion") {
      const prompt = completionPromptTokens(model, record.prompt);
      const completion = continuationTokens(model, record.completion);
      if (model.tokens.eos !== null) completion.push(model.tokens.eos);
      out.push({ tokens: [...prompt, ...completion], supervised: [...prompt.map(() => false), ...completion.map(() => true)] });
      continue;
    }
    if (!options.chatFormat) throw new TrainingDataError(`line ${record.line}: chat records need a chat format`);
    eot ??= endOfTurnTokens(model, options.chatFormat);
    out.push(...tokenizeChat(model, options.chatFormat, record.messages, eot));
  }
  return out;
}

function tokenizeChat(
  model: LlamaModel,
  format: ChatWrapper,
  messages: readonly (ChatTurn & { weight: number })[],
  eot: readonly Token[],
): TokenSequence[] {
  const sequences: TokenSequence[] = [];
  let tokens: Token[] = [];
  let supervised: boolean[] = [];
  for (const [i, message] of messages.entries()) {
    if (message.role !== "assistant" || message.weight === 0) continue;
    const prefix = buildChatPrompt(model, format, messages.slice(0, i)).tokens;
    const extendsCurrent = tokens.length > 0 && prefix.length >= tokens.length && tokens.every((t, k) => prefix[k] === t);
    if (!extendsCurrent) {
      if (tokens.length > 0) sequences.push({ tokens, supervised });
      tokens = [];
      supervised = [];
    }
    const added = prefix.slice(tokens.length);
    tokens.push(...added);
    supervised.push(...added.map(() => false));
    const answer = [...continuationTokens(model, message.content), ...eot];
    tokens.push(...answer);
    supervised.push(...answer.map(() => true));
  }
  if (tokens.length > 0) sequences.push({ tokens, supervised });
  return sequences;
}

/** Splits deterministically: a seeded shuffle, the first `fraction` (at least 1 when fraction > 0) held out. */
export function splitValidation<T>(items: readonly T[], fraction: number, seed: number): { train: T[]; validation: T[] } {
  if (fraction <= 0 || items.length < 2) return { train: [...items], validation: [] };
  const order = items.map((_, i) => i);
  const next = mulberry32(seed % 0x1_0000_0000);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nVal = Math.min(items.length - 1, Math.max(1, Math.round(fraction * items.length)));
  const held = new Set(order.slice(0, nVal));
  return { train: items.filter((_, i) => !held.has(i)), validation: items.filter((_, i) => held.has(i)) };
}
