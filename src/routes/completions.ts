import { Hono } from "hono";
import type { GeneratedPiece } from "../engine/generation-types.js";
import type { AppDeps } from "../http/app-deps.js";
import { apiErrors } from "../http/api-error.js";
import { readJsonBody } from "../http/read-json-body.js";
import { sseResponse } from "../http/sse.js";
import { completionRequestSchema } from "../protocol/completion-schema.js";
import { toGenerationParams } from "../protocol/to-generation-params.js";
import {
  admitJob,
  collectJob,
  completionId,
  recordRequest,
  resolveTarget,
  streamJob,
  usageOf,
  type Timings,
} from "./generation-runner.js";

export function completionsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/completions", async (c) => {
    const timings: Timings = { startedAt: performance.now(), firstTokenAt: null };
    const request = await readJsonBody(c, completionRequestSchema);
    if (request.suffix) throw apiErrors.invalidField("suffix", "'suffix' (fill-in-the-middle) is not supported.");
    const { served, adapters } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
    const params = toGenerationParams(request, {
      topLogprobs: request.logprobs ?? null,
      output: { kind: "text" },
      // OpenAI's legacy completions default to 16 tokens.
      maxTokens: request.max_tokens ?? 16,
    });
    // Plain text, exactly as written, with BOS when the model wants one (as llama.cpp's server does).
    const promptTokens = served.model.tokenize(request.prompt, false);
    const bos = served.model.tokens.bos;
    if (bos !== null && served.model.tokens.shouldPrependBosToken && promptTokens[0] !== bos) promptTokens.unshift(bos);
    const job = await admitJob(deps, served, { promptTokens, params, adapters, signal: c.req.raw.signal });
    const id = completionId("cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = served.spec.id;
    const echo = request.echo ? request.prompt : "";
    const wantLogprobs = params.topLogprobs !== null;

    if (request.stream) {
      const includeUsage = request.stream_options?.include_usage === true;
      const chunk = (text: string, finish: string | null, pieces: GeneratedPiece[] = []) => ({
        id,
        object: "text_completion",
        created,
        model,
        choices: [{ index: 0, text, logprobs: wantLogprobs ? completionLogprobs(pieces, 0) : null, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      let last: Parameters<typeof usageOf>[0] | undefined;
      async function* events() {
        if (echo) yield chunk(echo, null);
        yield* streamJob(
          job,
          timings,
          (piece) => chunk(piece.text, null, [piece]),
          (result) => {
            last = result;
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
    return c.json({
      id,
      object: "text_completion",
      created,
      model,
      choices: [
        {
          index: 0,
          text: echo + text,
          logprobs: wantLogprobs ? completionLogprobs(pieces, echo.length) : null,
          finish_reason: result.finishReason,
        },
      ],
      usage: usageOf(result),
    });
  });
  return app;
}

function completionLogprobs(pieces: readonly GeneratedPiece[], startOffset: number) {
  const entries = pieces.flatMap((p) => p.logprobs);
  const textOffset: number[] = [];
  let offset = startOffset;
  for (const entry of entries) {
    textOffset.push(offset);
    offset += entry.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}
