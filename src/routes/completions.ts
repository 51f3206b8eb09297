import { Hono } from "hono";
import type { GeneratedPiece } from "../engine/generation-types.js";
import type { AppDeps } from "../http/app-deps.js";
import { apiErrors } from "../errors/api-error.js";
import { readJsonBody } from "../http/read-json-body.js";
import { sseResponse } from "../http/sse.js";
import { completionRequestSchema } from "../protocol/completion-schema.js";
import { toGenerationParams } from "../protocol/to-generation-params.js";
import { CompletionLogprobsBuilder, type CompletionLogprobs } from "./completion-logprobs.js";
import { resolveCompletionPrompt } from "./completion-prompt.js";
import { admitJob } from "../serving/admission.js";
import { collectJob, streamJob, type Timings, usageOf } from "../serving/job-output.js";
import { recordRequest } from "../serving/request-record.js";
import { resolveTarget } from "../serving/target.js";
import { completionId } from "./completion-id.js";

export function completionsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/completions", async (c) => {
    const timings: Timings = { startedAt: performance.now(), firstTokenAt: null };
    const request = await readJsonBody(c, completionRequestSchema);
    if (request.suffix) throw apiErrors.invalidField("suffix", "'suffix' (fill-in-the-middle) is not supported.");
    const { served, adapters } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
    const prompt = resolveCompletionPrompt(served, request.prompt);
    const echo = request.echo ? prompt.text : "";
    const wantLogprobs = request.logprobs != null;
    // OpenAI and vLLM: max_tokens 0 with echo scores the prompt without generating; without echo it would ask
    // for nothing at all, which vLLM refuses too.
    if (request.max_tokens === 0 && !request.echo) {
      throw apiErrors.invalidField(
        "max_tokens",
        "'max_tokens' must be at least 1 (0 is only allowed with 'echo': true, to score the prompt).",
      );
    }
    const params = toGenerationParams(request, {
      topLogprobs: request.logprobs ?? null,
      promptLogprobs: request.echo === true && wantLogprobs,
      output: { kind: "text" },
      // OpenAI's legacy completions default to 16 tokens.
      maxTokens: request.max_tokens ?? 16,
    });
    const job = await admitJob(deps, served, { promptTokens: prompt.tokens, params, adapters, signal: c.req.raw.signal });
    const id = completionId("cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = served.spec.id;
    const logprobs = new CompletionLogprobsBuilder();
    // Echoed prompt text first (with its tokens' logprobs when the engine scored them), then generated text.
    const logprobsOf = (piece: GeneratedPiece) =>
      piece.promptLogprobs ? logprobs.buildPrompt(piece.promptLogprobs, echo) : logprobs.build(piece.logprobs);

    if (request.stream) {
      const includeUsage = request.stream_options?.include_usage === true;
      const chunk = (text: string, finish: string | null, piece?: GeneratedPiece) => ({
        id,
        object: "text_completion",
        created,
        model,
        choices: [{ index: 0, text, logprobs: wantLogprobs && piece ? logprobsOf(piece) : null, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      let last: Parameters<typeof usageOf>[0] | undefined;
      async function* events() {
        if (echo && !params.promptLogprobs) {
          yield chunk(echo, null);
          logprobs.restartAt(echo.length);
        }
        yield* streamJob(
          job,
          timings,
          (piece) => chunk(piece.promptLogprobs ? echo : piece.text, null, piece),
          (result) => {
            last = result;
            // Cancelled: the client is gone, there is no one to tell.
            if (result.finishReason === "cancelled") return [];
            const end: object[] = [chunk("", result.finishReason)];
            if (includeUsage) end.push({ id, object: "text_completion", created, model, choices: [], usage: usageOf(result) });
            return end;
          },
        );
      }
      return sseResponse(events(), () => {
        job.dispose();
        recordRequest(deps, { id, route: "completions", model, adapters, job, timings, stream: true, ...(last ? { result: last } : {}) });
      });
    }

    const { text, pieces, result } = await collectJob(job, timings);
    recordRequest(deps, { id, route: "completions", model, adapters, job, timings, result, stream: false });
    // Cancelled: the client is gone and reads nothing; the error table's 499 is for proxies' logs.
    if (result.finishReason === "cancelled") throw apiErrors.cancelled();
    if (echo && !params.promptLogprobs) logprobs.restartAt(echo.length);
    const entries = pieces.map(logprobsOf);
    return c.json({
      id,
      object: "text_completion",
      created,
      model,
      choices: [
        {
          index: 0,
          text: echo + text,
          logprobs: wantLogprobs ? concatLogprobs(entries) : null,
          finish_reason: result.finishReason,
        },
      ],
      usage: usageOf(result),
    });
  });
  return app;
}

function concatLogprobs(parts: readonly CompletionLogprobs[]): CompletionLogprobs {
  return {
    tokens: parts.flatMap((p) => p.tokens),
    token_logprobs: parts.flatMap((p) => p.token_logprobs),
    top_logprobs: parts.flatMap((p) => p.top_logprobs),
    text_offset: parts.flatMap((p) => p.text_offset),
  };
}
