import { Hono } from "hono";
import type { GenerationJob } from "../engine/generation-job.js";
import type { GeneratedPiece, GenerationResult } from "../engine/generation-types.js";
import type { AppDeps } from "../http/app-deps.js";
import { apiErrors } from "../errors/api-error.js";
import { readJsonBody } from "../http/read-json-body.js";
import { completionRequestSchema } from "../protocol/completion-schema.js";
import { toGenerationParams } from "../protocol/to-generation-params.js";
import { CompletionLogprobsBuilder, type CompletionLogprobs } from "./completion-logprobs.js";
import { resolveCompletionPrompt } from "./completion-prompt.js";
import { admitChoices } from "../serving/choices.js";
import { combineResults, streamJob, type Timings, usageOf } from "../serving/job-output.js";
import { collectChoices, streamChoices } from "./choice-responses.js";
import { recordRequest } from "../serving/request-record.js";
import { resolveTarget } from "../serving/target.js";
import { vocabularySize } from "../engine/vocabulary.js";
import { completionId } from "./completion-id.js";
import { chunkWriter } from "./stream-chunk.js";

export function completionsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/completions", async (c) => {
    const timings: Timings = { startedAt: performance.now(), firstTokenAt: null };
    const request = await readJsonBody(c, completionRequestSchema);
    if (request.suffix) throw apiErrors.invalidField("suffix", "'suffix' (fill-in-the-middle) is not supported.");
    const { served, adapters, responseModel } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
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
      vocabularySize: vocabularySize(served.model),
      topLogprobs: request.logprobs ?? null,
      promptLogprobs: request.echo === true && wantLogprobs,
      output: { kind: "text" },
      // OpenAI's legacy completions default to 16 tokens.
      maxTokens: request.max_tokens ?? 16,
    });
    const n = request.n ?? 1;
    const jobs = await admitChoices(deps, served, { promptTokens: prompt.tokens, params, adapters, signal: c.req.raw.signal }, n);
    const id = completionId("cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = responseModel;
    // Offsets run through each choice's own text: one builder per choice.
    const builders = jobs.map(() => new CompletionLogprobsBuilder());
    // Echoed prompt text first (with its tokens' logprobs when the engine scored them), then generated text.
    const logprobsOf = (index: number, piece: GeneratedPiece) =>
      piece.promptLogprobs ? builders[index]!.buildPrompt(piece.promptLogprobs, echo) : builders[index]!.build(piece.logprobs);
    const record = (results: readonly GenerationResult[], stream: boolean) =>
      recordRequest(deps, {
        id,
        route: "completions",
        model,
        adapters,
        job: jobs[0]!,
        timings,
        stream,
        ...(results.length === n ? { result: combineResults(results) } : {}),
      });

    if (request.stream) {
      const includeUsage = request.stream_options?.include_usage === true;
      const chunk = (index: number, text: string, finish: string | null, piece?: GeneratedPiece) => ({
        id,
        object: "text_completion",
        created,
        model,
        choices: [{ index, text, logprobs: wantLogprobs && piece ? logprobsOf(index, piece) : null, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
      // A generated piece's chunk is the bulk of the stream: only its choice is serialised per piece.
      const pieceChunk = chunkWriter({ id, object: "text_completion", created, model }, includeUsage);
      const pieceChoice = (index: number, text: string, piece: GeneratedPiece) =>
        pieceChunk(
          `{"index":${index},"text":${JSON.stringify(text)},"logprobs":${wantLogprobs ? JSON.stringify(logprobsOf(index, piece)) : "null"},"finish_reason":null}`,
        );
      const results: GenerationResult[] = [];
      async function* choice(job: GenerationJob, index: number) {
        if (echo && !params.promptLogprobs) {
          yield chunk(index, echo, null);
          builders[index]!.restartAt(echo.length);
        }
        yield* streamJob<object>(
          job,
          timings,
          (piece) => pieceChoice(index, piece.promptLogprobs ? echo : piece.text, piece),
          (result) => {
            results.push(result);
            // Cancelled: the client is gone, there is no one to tell.
            return result.finishReason === "cancelled" ? [] : [chunk(index, "", result.finishReason)];
          },
        );
      }
      const usageChunk = (usage: ReturnType<typeof usageOf>) => ({ id, object: "text_completion", created, model, choices: [], usage });
      return streamChoices(jobs, choice, results, includeUsage ? usageChunk : null, () => record(results, true));
    }

    const outputs = await collectChoices(jobs, timings, (results) => record(results, false));
    const results = outputs.map((o) => o.result);
    return c.json({
      id,
      object: "text_completion",
      created,
      model,
      choices: outputs.map(({ text, pieces, result }, index) => {
        if (echo && !params.promptLogprobs) builders[index]!.restartAt(echo.length);
        return {
          index,
          text: echo + text,
          logprobs: wantLogprobs ? concatLogprobs(pieces.map((piece) => logprobsOf(index, piece))) : null,
          finish_reason: result.finishReason,
        };
      }),
      usage: usageOf(combineResults(results)),
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
