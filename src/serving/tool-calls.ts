import type { LlamaText, Token } from "node-llama-cpp";
import type { ResolvedAdapterSet } from "../engine/adapters/adapter-set-compiler.js";
import type { GenerationJob } from "../engine/generation-job.js";
import type { FinishReason, GenerationParams, GenerationResult } from "../engine/generation-types.js";
import { apiErrors } from "../errors/api-error.js";
import { toolArgumentsGrammar } from "../engine/tool-arguments-grammar.js";
import { continuedPrompt, type ToolCallFormat } from "../engine/tool-call-format.js";
import type { ServedModel } from "../engine/served-model.js";
import { admitJob } from "./admission.js";
import { streamJob, type Timings } from "./job-output.js";
import type { ServingDeps } from "./serving-deps.js";

/** A function the client offers; `parameters` is its JSON schema (none = no arguments). */
export interface OfferedFunction {
  readonly name: string;
  readonly parameters?: Readonly<Record<string, unknown>>;
}

/** `auto`: the model decides; `required`: it must call one of them; a name: it must call that one. */
export type ToolMode = "auto" | "required" | { readonly name: string };

export type ToolChatEvent =
  | { readonly type: "content"; readonly text: string }
  | { readonly type: "call"; readonly name: string }
  | { readonly type: "arguments"; readonly text: string };

export interface ToolChatOutcome {
  readonly finishReason: FinishReason | "tool_calls";
  /** Usage over all phases: the prompt once, generated tokens summed. */
  readonly result: GenerationResult;
  /** The first job that ran (for the request log: lane, queueing). */
  readonly firstJob: GenerationJob | undefined;
}

export interface ToolChatInput {
  readonly served: ServedModel;
  readonly format: ToolCallFormat;
  readonly prompt: { readonly tokens: Token[]; readonly text: LlamaText; readonly stopTokens: ReadonlySet<Token> };
  readonly functions: readonly OfferedFunction[];
  readonly mode: ToolMode;
  readonly params: GenerationParams;
  readonly adapters: ResolvedAdapterSet;
  readonly signal: AbortSignal;
}

/**
 * A chat turn that may call a function, in up to three generations on the same lane set:
 * 1. (auto only) free text, which ends where the model starts a call by writing the template's call prefix;
 * 2. the function's name, grammar-constrained to the offered names (skipped when only one can be called);
 * 3. the arguments, grammar-constrained to the function's JSON schema, after the prompt, the text so far, the
 *    call prefix, the name and the parameters prefix, exactly as the template writes a call.
 * A forced call thus always has arguments that parse and follow the schema, whatever the model (unless
 * max_tokens cuts them: finish reason `length`). At most one call per turn.
 */
export async function* runToolChat(
  deps: ServingDeps,
  input: ToolChatInput,
  timings: Timings,
): AsyncGenerator<ToolChatEvent, ToolChatOutcome, void> {
  const { served, format, prompt, params } = input;
  let firstJob: GenerationJob | undefined;
  let completionTokens = 0;
  let first: GenerationResult | undefined;
  const budget = () => (params.maxTokens === null ? null : params.maxTokens - completionTokens);
  const outcome = (finishReason: ToolChatOutcome["finishReason"]): ToolChatOutcome => ({
    finishReason,
    firstJob,
    result: {
      finishReason: finishReason === "tool_calls" ? "stop" : finishReason,
      promptTokens: first?.promptTokens ?? prompt.tokens.length,
      completionTokens,
      cachedPromptTokens: first?.cachedPromptTokens ?? 0,
    },
  });
  /** Runs one generation, passing its text pieces on; returns its result and its whole text. */
  async function* phase(promptTokens: Token[], phaseParams: GenerationParams, stopTokens: ReadonlySet<Token>) {
    const job = await admitJob(deps, served, {
      promptTokens,
      params: phaseParams,
      stopTokens,
      adapters: input.adapters,
      signal: input.signal,
    });
    firstJob ??= job;
    let result: GenerationResult | undefined;
    yield* streamJob(
      job,
      timings,
      (piece) => piece.text,
      (end) => {
        result = end;
        return [];
      },
    );
    first ??= result;
    completionTokens += result?.completionTokens ?? 0;
    return result ?? { finishReason: "cancelled" as const, promptTokens: promptTokens.length, completionTokens: 0, cachedPromptTokens: 0 };
  }

  // Every offered schema is checked before anything generates, so a bad one is a 400, never a broken stream.
  const grammars = new Map(input.functions.map((fn) => [fn.name, argumentsGrammar(served, fn)]));
  let content = "";
  let candidates = input.functions;
  if (typeof input.mode === "object") {
    const forced = input.mode.name;
    candidates = input.functions.filter((f) => f.name === forced);
  } else if (input.mode === "auto") {
    const stopTokens = new Set(prompt.stopTokens);
    if (format.triggerToken !== undefined) stopTokens.add(format.triggerToken);
    const free = phase(prompt.tokens, { ...params, stop: [...params.stop, ...format.triggerStrings] }, stopTokens);
    let step = await free.next();
    for (; !step.done; step = await free.next()) {
      content += step.value;
      if (step.value.length > 0) yield { type: "content", text: step.value };
    }
    const result = step.value;
    const startsCall =
      (result.stopString !== undefined && format.triggerStrings.includes(result.stopString)) ||
      (result.stopToken !== undefined && result.stopToken === format.triggerToken);
    if (!startsCall) return outcome(result.finishReason);
  }

  const name = candidates.length === 1 ? candidates[0]!.name : yield* chooseName();
  if (name === null) return outcome(input.signal.aborted ? "cancelled" : "length");
  const fn = candidates.find((f) => f.name === name)!;
  const argsPrompt = continuedPrompt(served.model, prompt.text, [content, format.prefix, name, format.paramsPrefix]);
  const args = phase(
    argsPrompt,
    { ...params, maxTokens: budget(), stop: [], output: { kind: "gbnf", grammar: grammars.get(fn.name)! } },
    prompt.stopTokens,
  );
  // Admitted (and the schema's grammar built) before the call is announced: those errors keep their status.
  let step = await args.next();
  yield { type: "call", name };
  // The grammar ends the JSON with newlines: hold back trailing whitespace until more text follows it.
  let held = "";
  for (; !step.done; step = await args.next()) {
    const text = held + step.value;
    const trimmed = text.trimEnd();
    held = text.slice(trimmed.length);
    if (trimmed.length > 0) yield { type: "arguments", text: trimmed };
  }
  const result = step.value;
  return outcome(result.finishReason === "stop" ? "tool_calls" : result.finishReason);

  /** The model picks one of the candidates' names (written as a JSON string, so an enum grammar holds it). */
  async function* chooseName(): AsyncGenerator<never, string | null, void> {
    const names = candidates.map((f) => f.name);
    const longest = Math.max(...names.map((n) => Buffer.byteLength(n)));
    const room = budget();
    const namePrompt = continuedPrompt(served.model, prompt.text, [content, format.prefix]);
    const choose = phase(
      namePrompt,
      {
        ...params,
        maxTokens: room === null ? longest + 8 : Math.min(room, longest + 8),
        stop: [],
        output: { kind: "json_schema", schema: { enum: names } },
      },
      prompt.stopTokens,
    );
    let text = "";
    let step = await choose.next();
    for (; !step.done; step = await choose.next()) text += step.value;
    try {
      const chosen: unknown = JSON.parse(text);
      return typeof chosen === "string" && names.includes(chosen) ? chosen : null;
    } catch {
      return null;
    }
  }
}

/** The grammar of a function's arguments; a schema the grammar builder cannot take is the client's error. */
function argumentsGrammar(served: ServedModel, fn: OfferedFunction): string {
  try {
    return toolArgumentsGrammar(served.model.llama, fn.parameters ?? NO_ARGUMENTS);
  } catch (error) {
    const detail = (error as Error).message.split("\n")[0] ?? "";
    throw apiErrors.invalidField("tools", `The parameters schema of function '${fn.name}' is not supported: ${detail}`);
  }
}

/** The schema of a function without parameters: arguments are `{}`. */
const NO_ARGUMENTS = { type: "object", properties: {} } as const;
