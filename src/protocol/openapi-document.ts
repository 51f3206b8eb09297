import { OpenApiBuilder, type ResponseObject, type SchemaObject } from "openapi3-ts/oas31";
import { stringify } from "yaml";
import { z } from "zod";
import { chatCompletionRequestSchema } from "./chat-schema.js";
import { completionRequestSchema } from "./completion-schema.js";
import { embeddingsRequestSchema } from "./embeddings-schema.js";
import { detokenizeRequestSchema, tokenizeRequestSchema } from "./tokenize-schema.js";
import { mergeAdaptersSchema, registerAdapterSchema } from "./adapter-schemas.js";
import { addFineTuningPaths, fineTuningComponents } from "./fine-tuning-openapi.js";
import {
  adapterListSchema,
  adapterObjectSchema,
  chatCompletionChunkSchema,
  chatCompletionResponseSchema,
  completionResponseSchema,
  detokenizeResponseSchema,
  embeddingListSchema,
  errorEnvelopeSchema,
  modelListSchema,
  modelObjectSchema,
  tokenizeResponseSchema,
} from "./response-schemas.js";

const components = {
  ChatCompletionRequest: chatCompletionRequestSchema,
  ChatCompletion: chatCompletionResponseSchema,
  ChatCompletionChunk: chatCompletionChunkSchema,
  CompletionRequest: completionRequestSchema,
  Completion: completionResponseSchema,
  EmbeddingsRequest: embeddingsRequestSchema,
  EmbeddingList: embeddingListSchema,
  TokenizeRequest: tokenizeRequestSchema,
  TokenizeResponse: tokenizeResponseSchema,
  DetokenizeRequest: detokenizeRequestSchema,
  DetokenizeResponse: detokenizeResponseSchema,
  Model: modelObjectSchema,
  ModelList: modelListSchema,
  Adapter: adapterObjectSchema,
  AdapterList: adapterListSchema,
  RegisterAdapterRequest: registerAdapterSchema,
  MergeAdaptersRequest: mergeAdaptersSchema,
  Error: errorEnvelopeSchema,
  ...fineTuningComponents,
} as const;

function toSchema(schema: z.ZodType): SchemaObject {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  delete json.$schema;
  return json as SchemaObject;
}

const ref = (name: keyof typeof components) => ({ $ref: `#/components/schemas/${name}` });

const errorResponse = (description: string): ResponseObject => ({
  description,
  content: { "application/json": { schema: ref("Error") } },
});

const standardErrors = {
  "400": errorResponse("Malformed JSON, a field that fails validation (param names it), or context_length_exceeded"),
  "401": errorResponse("Missing or wrong API key"),
  "404": errorResponse("Unknown model"),
  "413": errorResponse("Request body too large"),
  "429": errorResponse("Queue full; see Retry-After"),
  "503": errorResponse("Loading or shutting down"),
};

/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
export function buildOpenApiDocument() {
  const builder = OpenApiBuilder.create()
    .addOpenApiVersion("3.1.0")
    .addInfo({
      title: "lori-server",
      version: "0.1.0",
      description: "OpenAI-compatible inference for GGUF models with per-request LoRI adapters. Unknown request fields are ignored.",
    })
    .addSecurityScheme("bearer", { type: "http", scheme: "bearer" });
  for (const [name, schema] of Object.entries(components)) builder.addSchema(name, toSchema(schema));

  builder.addPath("/v1/chat/completions", {
    post: {
      operationId: "createChatCompletion",
      summary: "Chat completion (stream with SSE when stream=true, ending with data: [DONE])",
      requestBody: { required: true, content: { "application/json": { schema: ref("ChatCompletionRequest") } } },
      responses: {
        "200": {
          description: "A completion, or an SSE stream of chunks",
          content: {
            "application/json": { schema: ref("ChatCompletion") },
            "text/event-stream": { schema: ref("ChatCompletionChunk") },
          },
        },
        ...standardErrors,
      },
    },
  });
  builder.addPath("/v1/completions", {
    post: {
      operationId: "createCompletion",
      summary: "Text completion of a string prompt (SSE when stream=true)",
      requestBody: { required: true, content: { "application/json": { schema: ref("CompletionRequest") } } },
      responses: {
        "200": {
          description: "A completion, or an SSE stream of completion chunks",
          content: {
            "application/json": { schema: ref("Completion") },
            "text/event-stream": { schema: ref("Completion") },
          },
        },
        ...standardErrors,
      },
    },
  });
  builder.addPath("/v1/embeddings", {
    post: {
      operationId: "createEmbedding",
      summary: "Embeddings of text or token ids with the request's adapters applied (a list of inputs is answered in order)",
      requestBody: { required: true, content: { "application/json": { schema: ref("EmbeddingsRequest") } } },
      responses: {
        "200": { description: "One embedding per input", content: { "application/json": { schema: ref("EmbeddingList") } } },
        ...standardErrors,
      },
    },
  });
  builder.addPath("/tokenize", {
    post: {
      operationId: "tokenize",
      summary: "Text to token ids (llama.cpp server's shapes)",
      requestBody: { required: true, content: { "application/json": { schema: ref("TokenizeRequest") } } },
      responses: {
        "200": { description: "The tokens", content: { "application/json": { schema: ref("TokenizeResponse") } } },
        ...standardErrors,
      },
    },
  });
  builder.addPath("/detokenize", {
    post: {
      operationId: "detokenize",
      summary: "Token ids to text (llama.cpp server's shapes)",
      requestBody: { required: true, content: { "application/json": { schema: ref("DetokenizeRequest") } } },
      responses: {
        "200": { description: "The text", content: { "application/json": { schema: ref("DetokenizeResponse") } } },
        ...standardErrors,
      },
    },
  });
  builder.addPath("/v1/models", {
    get: {
      operationId: "listModels",
      summary: "Served models",
      responses: { "200": { description: "Model list", content: { "application/json": { schema: ref("ModelList") } } } },
    },
  });
  builder.addPath("/v1/models/{id}", {
    get: {
      operationId: "retrieveModel",
      summary: "One served model",
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
      responses: {
        "200": { description: "The model", content: { "application/json": { schema: ref("Model") } } },
        "404": errorResponse("Unknown model"),
      },
    },
  });
  const adapterResponse = (description: string) => ({ description, content: { "application/json": { schema: ref("Adapter") } } });
  builder.addPath("/adapters", {
    get: {
      operationId: "listAdapters",
      summary: "Adapters the caller's key may use",
      responses: { "200": { description: "Adapter list", content: { "application/json": { schema: ref("AdapterList") } } } },
    },
    post: {
      operationId: "registerAdapter",
      summary:
        "Register a directory (JSON {name, path}) or upload adapter_config.json + adapter_model.safetensors, or a GGUF LoRA as adapter.gguf (multipart, with a 'name' field; 'model' picks the base a GGUF LoRA is checked against); admin key",
      requestBody: {
        required: true,
        content: {
          "application/json": { schema: ref("RegisterAdapterRequest") },
          "multipart/form-data": {
            schema: {
              type: "object",
              required: ["name"],
              properties: {
                name: { type: "string" },
                "adapter_config.json": { type: "string", format: "binary" },
                "adapter_model.safetensors": { type: "string", format: "binary" },
                "adapter.gguf": { type: "string", format: "binary" },
                model: { type: "string" },
              },
            },
          },
        },
      },
      responses: {
        "201": adapterResponse("Registered"),
        "403": errorResponse("Not an admin key"),
        "409": errorResponse("Name taken"),
        ...standardErrors,
      },
    },
  });
  builder.addPath("/adapters/{name}", {
    get: {
      operationId: "getAdapter",
      summary: "One adapter",
      parameters: [{ name: "name", in: "path", required: true, schema: { type: "string" } }],
      responses: { "200": adapterResponse("The adapter"), "404": errorResponse("Unknown adapter") },
    },
    delete: {
      operationId: "deleteAdapter",
      summary: "Remove an adapter; running requests finish on the version they started with; admin key",
      parameters: [{ name: "name", in: "path", required: true, schema: { type: "string" } }],
      responses: { "200": { description: "Deleted" }, "403": errorResponse("Not an admin key"), "404": errorResponse("Unknown adapter") },
    },
  });
  builder.addPath("/adapters/merge", {
    post: {
      operationId: "mergeAdapters",
      summary:
        "Merge adapters (cat: exact weighted sum; linear, ties, dare_linear, dare_ties, magnitude_prune, svd: PEFT's) into a new saved adapter; admin key",
      requestBody: { required: true, content: { "application/json": { schema: ref("MergeAdaptersRequest") } } },
      responses: {
        "201": adapterResponse("The merged adapter"),
        "403": errorResponse("Not an admin key"),
        "409": errorResponse("Name taken"),
        ...standardErrors,
      },
    },
  });
  addFineTuningPaths(builder, ref, errorResponse);
  builder.addPath("/metrics", {
    get: {
      operationId: "metrics",
      summary: "Prometheus metrics (lori_* plus the vllm:* aliases the Kubernetes inference gateway reads)",
      responses: { "200": { description: "Prometheus text format" } },
    },
  });
  builder.addPath("/health", {
    get: { operationId: "health", summary: "Liveness (never needs a key)", responses: { "200": { description: "Alive" } } },
  });
  builder.addPath("/ready", {
    get: {
      operationId: "ready",
      summary: "Readiness: models loaded and not draining",
      responses: { "200": { description: "Ready" }, "503": { description: "Loading or draining" } },
    },
  });
  builder.addPath("/openapi.yaml", {
    get: { operationId: "openapi", summary: "This document", responses: { "200": { description: "OpenAPI YAML" } } },
  });
  const document = builder.getSpec();
  document.security = [{ bearer: [] }];
  return document;
}

let cachedYaml: string | undefined;

export function openApiYaml(): string {
  cachedYaml ??= stringify(buildOpenApiDocument(), { lineWidth: 0, aliasDuplicateObjects: false });
  return cachedYaml;
}
