import { Hono } from "hono";
import { buildChatPrompt, type ChatTurn } from "../engine/chat-prompt.js";
import type { GeneratedPiece } from "../engine/generation-types.js";
import type { AppDeps } from "../http/app-deps.js";
import { apiErrors } from "../errors/api-error.js";
import { readJsonBody } from "../http/read-json-body.js";
import { sseResponse } from "../http/sse.js";
import { chatCompletionRequestSchema, type ChatMessage } from "../protocol/chat-schema.js";
import { chatOutputConstraint, toGenerationParams } from "../protocol/to-generation-params.js";
import { admitJob } from "../serving/admission.js";
import { collectJob, streamJob, type Timings, usageOf } from "../serving/job-output.js";
import { recordRequest } from "../serving/request-record.js";
import { resolveTarget } from "../serving/target.js";
import { completionId } from "./completion-id.js";

export function chatCompletionsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/chat/completions", async (c) => {
    const timings: Timings = { startedAt: performance.now(), firstTokenAt: null };
    const request = await readJsonBody(c, chatCompletionRequestSchema);
    const { served, adapters } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
    const params = toGenerationParams(request, {
      topLogprobs: request.logprobs ? (request.top_logprobs ?? 0) : null,
      output: chatOutputConstraint(request),
      maxTokens: request.max_completion_tokens ?? request.max_tokens,
    });
    const prompt = buildChatPrompt(served.model, served.chatFormat, request.messages.map(toTurn));
    const job = await admitJob(deps, served, {
      promptTokens: prompt.tokens,
      params: { ...params, stop: [...params.stop, ...prompt.stopStrings] },
      stopTokens: prompt.stopTokens,
      adapters,
      signal: c.req.raw.signal,
    });
    const id = completionId("chatcmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = served.spec.id;
    const wantLogprobs = params.topLogprobs !== null;

    if (request.stream) {
      const includeUsage = request.stream_options?.include_usage === true;
      const chunk = (delta: object, finish: string | null, logprobs?: unknown) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [{ index: 0, delta, ...(logprobs !== undefined ? { logprobs } : {}), finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      let last: Parameters<typeof usageOf>[0] | undefined;
      async function* events() {
        yield chunk({ role: "assistant", content: "" }, null);
        yield* streamJob(
          job,
          timings,
          (piece) => chunk({ content: piece.text }, null, wantLogprobs ? chatLogprobs([piece]) : undefined),
          (result) => {
            last = result;
            // Cancelled: the client is gone, there is no one to tell.
            if (result.finishReason === "cancelled") return [];
            const end: object[] = [chunk({}, result.finishReason)];
            if (includeUsage) end.push({ id, object: "chat.completion.chunk", created, model, choices: [], usage: usageOf(result) });
            return end;
          },
        );
      }
      return sseResponse(events(), () => {
        job.dispose();
        recordRequest(deps, { id, route: "chat", model, adapters, job, timings, stream: true, ...(last ? { result: last } : {}) });
      });
    }

    const { text, pieces, result } = await collectJob(job, timings);
    recordRequest(deps, { id, route: "chat", model, adapters, job, timings, result, stream: false });
    // Cancelled: the client is gone and reads nothing; the error table's 499 is for proxies' logs.
    if (result.finishReason === "cancelled") throw apiErrors.cancelled();
    return c.json({
      id,
      object: "chat.completion",
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: text },
          logprobs: wantLogprobs ? chatLogprobs(pieces) : null,
          finish_reason: result.finishReason,
        },
      ],
      usage: usageOf(result),
    });
  });
  return app;
}

function toTurn(message: ChatMessage): ChatTurn {
  const content = message.content ?? "";
  const text = typeof content === "string" ? content : content.map((part) => part.text).join("");
  const role = message.role === "developer" ? "system" : message.role;
  return { role, content: text };
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
