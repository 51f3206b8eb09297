import type { Context } from "hono";
import type { ResolvedAdapterSet } from "../engine/adapters/adapter-set-compiler.js";
import type { ChatPrompt } from "../engine/chat-prompt.js";
import type { GenerationParams } from "../engine/generation-types.js";
import type { ServedModel } from "../engine/served-model.js";
import type { ToolCallFormat } from "../engine/tool-call-format.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { sseResponse } from "../http/sse.js";
import type { Tool } from "../protocol/chat-schema.js";
import type { RequestedToolMode } from "../protocol/tool-choice.js";
import { type Timings, usageOf } from "../serving/job-output.js";
import { recordRequest } from "../serving/request-record.js";
import { runToolChat, type ToolChatOutcome } from "../serving/tool-calls.js";
import { completionId } from "./completion-id.js";

export interface ToolCallRequest {
  readonly served: ServedModel;
  readonly responseModel: string;
  readonly adapters: ResolvedAdapterSet;
  readonly format: ToolCallFormat;
  readonly prompt: ChatPrompt;
  readonly tools: readonly Tool[];
  readonly mode: Exclude<RequestedToolMode, null>;
  readonly params: GenerationParams;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly timings: Timings;
}

/** A chat completion that may call a function: OpenAI's `tool_calls` message, or its streamed deltas. */
export async function toolCallResponse(c: Context, deps: AppDeps, request: ToolCallRequest): Promise<Response> {
  const { served, adapters, timings } = request;
  const id = completionId("chatcmpl");
  const callId = completionId("call");
  const created = Math.floor(Date.now() / 1000);
  const model = request.responseModel;
  const events = runToolChat(
    deps,
    {
      served,
      format: request.format,
      prompt: request.prompt,
      functions: request.tools.map((t) => ({
        name: t.function.name,
        ...(t.function.parameters ? { parameters: t.function.parameters } : {}),
      })),
      mode: request.mode,
      params: { ...request.params, stop: [...request.params.stop, ...request.prompt.stopStrings] },
      adapters,
      signal: c.req.raw.signal,
    },
    timings,
  );
  let outcome: ToolChatOutcome | undefined;
  const record = (stream: boolean) => {
    if (!outcome?.firstJob) return;
    recordRequest(deps, { id, route: "chat", model, adapters, job: outcome.firstJob, timings, stream, result: outcome.result });
  };
  const finishReason = (o: ToolChatOutcome) => o.finishReason;

  if (request.stream) {
    const chunk = (delta: object, finish: string | null) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...(request.includeUsage ? { usage: null } : {}),
    });
    // Admission errors (queue full, a schema the grammar cannot take) keep their status: start the first
    // generation before the response does.
    const firstEvent = await events.next();
    async function* sse() {
      yield chunk({ role: "assistant", content: request.mode === "auto" ? "" : null }, null);
      for (let step = firstEvent; ; step = await events.next()) {
        if (step.done) {
          outcome = step.value;
          break;
        }
        const event = step.value;
        if (event.type === "content") yield chunk({ content: event.text }, null);
        else if (event.type === "call") {
          yield chunk({ tool_calls: [{ index: 0, id: callId, type: "function", function: { name: event.name, arguments: "" } }] }, null);
        } else yield chunk({ tool_calls: [{ index: 0, function: { arguments: event.text } }] }, null);
      }
      if (outcome.finishReason === "cancelled") return;
      yield chunk({}, finishReason(outcome));
      if (request.includeUsage) yield { id, object: "chat.completion.chunk", created, model, choices: [], usage: usageOf(outcome.result) };
    }
    return sseResponse(sse(), () => {
      void events.return(undefined as never).catch(() => undefined);
      record(true);
    });
  }

  let content = "";
  let call: { name: string; arguments: string } | undefined;
  for (let step = await events.next(); ; step = await events.next()) {
    if (step.done) {
      outcome = step.value;
      break;
    }
    const event = step.value;
    if (event.type === "content") content += event.text;
    else if (event.type === "call") call = { name: event.name, arguments: "" };
    else if (call) call.arguments += event.text;
  }
  record(false);
  if (outcome.finishReason === "cancelled") throw apiErrors.cancelled();
  return c.json({
    id,
    object: "chat.completion",
    created,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: call && content.length === 0 ? null : content,
          ...(call ? { tool_calls: [{ id: callId, type: "function", function: call }] } : {}),
        },
        logprobs: null,
        finish_reason: finishReason(outcome),
      },
    ],
    usage: usageOf(outcome.result),
  });
}
