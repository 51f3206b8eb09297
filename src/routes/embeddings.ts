import { Hono } from "hono";
import type { Token } from "node-llama-cpp";
import { ContextLengthExceededError } from "../engine/engine-errors.js";
import { type EmbeddingInput, embeddingsOf } from "../engine/embeddings.js";
import { vocabularySize } from "../engine/vocabulary.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { readJsonBody } from "../http/read-json-body.js";
import { type EmbeddingsRequest, embeddingsRequestSchema } from "../protocol/embeddings-schema.js";
import { resolveTarget } from "../serving/target.js";

/** OpenAI's embeddings, computed by the served model with the request's adapters applied. */
export function embeddingsRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/v1/embeddings", async (c) => {
    const request = await readJsonBody(c, embeddingsRequestSchema);
    const { served, adapters, responseModel } = resolveTarget(deps, c.get("principal"), request.model, request.adapter);
    const size = served.model.embeddingVectorSize;
    if (request.dimensions !== undefined && request.dimensions !== size) {
      throw apiErrors.invalidField("dimensions", `This model's embeddings have ${size} dimensions; 'dimensions' cannot change that.`);
    }
    const inputs = inputList(request.input);
    const vocabulary = vocabularySize(served.model);
    for (const input of inputs) {
      const bad = typeof input === "string" ? undefined : input.find((id) => id >= vocabulary);
      if (bad !== undefined)
        throw apiErrors.invalidField("input", `Token id ${bad} is outside the model's vocabulary (${vocabulary} tokens).`);
    }
    const { vectors, promptTokens } = await embeddingsOf(served)
      .embed(inputs, adapters)
      .catch((error: unknown) => {
        if (!(error instanceof ContextLengthExceededError)) throw error;
        throw apiErrors.invalidField(
          "input",
          `This model's maximum context length is ${error.contextSize} tokens, but an input has ${error.promptTokens} tokens.`,
        );
      });
    const base64 = request.encoding_format === "base64";
    return c.json({
      object: "list",
      data: vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? toBase64(vector) : vector })),
      model: responseModel,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  });
  return app;
}

/** OpenAI's input forms as a list: text, token ids, or a list of either. */
function inputList(input: EmbeddingsRequest["input"]): EmbeddingInput[] {
  if (typeof input === "string") return [input];
  if (input.every((item) => typeof item === "number")) return [input as Token[]];
  return input as EmbeddingInput[];
}

/** OpenAI's base64 encoding: the float32 values, little-endian, as one base64 string. */
function toBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((value, i) => bytes.writeFloatLE(value, i * 4));
  return bytes.toString("base64");
}
