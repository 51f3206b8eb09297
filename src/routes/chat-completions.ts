import { Hono } from "hono";
import { buildChatPrompt, type ChatFunction } from "../engine/chat-prompt.js";
import { toolCallFormat } from "../engine/tool-call-format.js";
import type { GenerationJob } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";
import type { AppDeps } from "../http/app-deps.js";
import { apiErrors } from "../errors/api-error.js";
import { readJsonBody } from "../http/read-json-body.js";
import { toChatTurns } from "../protocol/chat-messages.js";
import { chatCompletionRequestSchema, type Tool } from "../protocol/chat-schema.js";
import { requestedToolMode } from "../protocol/tool-choice.js";
import { chatOutputConstraint, toGenerationParams } from "../protocol/to-generation-params.js";
import { admitChoices } from "../serving/choices.js";
import { combineResults, streamJob, type Timings, usageOf } from "../serving/job-output.js";
import { collectChoices, streamChoices } from "./choice-responses.js";
import { recordRequest } from "../serving/request-record.js";
import { resolveTarget } from "../serving/target.js";
import { vocabularySize } from "../engine/vocabulary.js";
import { toolCallResponse } from "./chat-tool-calls.js";
import { completionId } from "./completion-id.js";
import { chunkWriter } from "./stream-chunk.js";

export function chatCompletionsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/chat/completions", async (c) => {
    const timings: Timings = { startedAt: performance.now(), firstTokenAt: null };
    const request = await readJsonBody(c, chatCompletionRequestSchema);
    const { served, adapters, responseModel } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
    const params = toGenerationParams(request, {
      vocabularySize: vocabularySize(served.model),
      topLogprobs: request.logprobs ? (request.top_logprobs ?? 0) : null,
      output: chatOutputConstraint(request),
      maxTokens: request.max_completion_tokens ?? request.max_tokens,
    });
    const toolMode = requestedToolMode(request);
    const usesTools =
      (request.tools?.length ?? 0) > 0 ||
      request.messages.some((m) => m.role === "tool" || (m.role === "assistant" && m.tool_calls?.length));
    const format = usesTools ? toolCallFormat(served.model, served.chatFormat) : null;
    if (usesTools && format === null) {
      throw apiErrors.invalidField(
        "tools",
        `The chat template of '${served.spec.id}' has no tool-call format, so 'tools' (and tool messages) cannot be used with it; serve it with a --chat-template that renders tools.`,
      );
    }
    const turns = toChatTurns(request.messages);
    const functions = toolMode === null ? undefined : offeredFunctions(request.tools ?? []);
    const prompt = buildChatPrompt(served.model, served.chatFormat, turns, functions);
    if (toolMode !== null && format !== null) {
      return toolCallResponse(c, deps, {
        served,
        responseModel,
        adapters,
        format,
        prompt,
        tools: request.tools ?? [],
        mode: toolMode,
        params,
        stream: request.stream === true,
        includeUsage: request.stream_options?.include_usage === true,
        timings,
      });
    }
    const n = request.n ?? 1;
    const jobs = await admitChoices(
      deps,
      served,
      {
        promptTokens: prompt.tokens,
        params: { ...params, stop: [...params.stop, ...prompt.stopStrings] },
        stopTokens: prompt.stopTokens,
        adapters,
        signal: c.req.raw.signal,
      },
      n,
    );
    const id = completionId("chatcmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = responseModel;
    const wantLogprobs = params.topLogprobs !== null;
    const record = (results: readonly GenerationResult[] | undefined, stream: boolean) =>
      recordRequest(deps, {
        id,
        route: "chat",
        model,
        adapters,
        job: jobs[0]!,
        timings,
        stream,
        ...(results && results.length === n ? { result: combineResults(results) } : {}),
      });

    if (request.stream) {
      const includeUsage = request.stream_options?.include_usage === true;
      const chunk = (index: number, delta: object, finish: string | null, logprobs?: unknown) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [{ index, delta, ...(logprobs !== undefined ? { logprobs } : {}), finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      // A generated piece's chunk is the bulk of the stream: only its choice is serialised per piece.
      const pieceChunk = chunkWriter({ id, object: "chat.completion.chunk", created, model }, includeUsage);
      const pieceChoice = (index: number, piece: GeneratedPiece) =>
        pieceChunk(
          `{"index":${index},"delta":{"content":${JSON.stringify(piece.text)}}${wantLogprobs ? `,"logprobs":${JSON.stringify(chatLogprobs([piece]))}` : ""},"finish_reason":null}`,
        );
      const results: GenerationResult[] = [];
      async function* choice(job: GenerationJob, index: number) {
        yield chunk(index, { role: "assistant", content: "" }, null);
        yield* streamJob<object>(
          job,
          timings,
          (piece) => pieceChoice(index, piece),
          (result) => {
            results.push(result);
            // Cancelled: the client is gone, there is no one to tell.
            return result.finishReason === "cancelled" ? [] : [chunk(index, {}, result.finishReason)];
          },
        );
      }
      const usageChunk = (usage: ReturnType<typeof usageOf>) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [],
        usage,
      });
      return streamChoices(jobs, choice, results, includeUsage ? usageChunk : null, () => record(results, true));
    }

    const outputs = await collectChoices(jobs, timings, (results) => record(results, false));
    const results = outputs.map((o) => o.result);
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      choices: outputs.map(({ text, pieces, result }, index) => ({
        index,
        message: { role: "assistant", content: text },
        logprobs: wantLogprobs ? chatLogprobs(pieces) : null,
        finish_reason: result.finishReason,
      })),
      usage: usageOf(combineResults(results)),
    });
  });
  return app;
}

/** The offered functions as the chat wrapper documents them to the model. */
function offeredFunctions(tools: readonly Tool[]): Record<string, ChatFunction> {
  return Object.fromEntries(
    tools.map((tool) => [
      tool.function.name,
      {
        ...(tool.function.description !== undefined ? { description: tool.function.description } : {}),
        ...(tool.function.parameters !== undefined ? { parameters: tool.function.parameters } : {}),
      },
    ]),
  );
}

/** OpenAI chat logprobs; `bytes` are the token's own bytes, so partial characters can be joined by clients. */
function chatLogprobs(pieces: readonly GeneratedPiece[]) {
  return {
    content: pieces.flatMap((piece) =>
      piece.logprobs.map((entry) => ({
        token: entry.token,
        logprob: entry.logprob,
        bytes: entry.bytes,
        top_logprobs: entry.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
      })),
    ),
  };
}
