import { z } from "zod";

/** Response shapes, used for the OpenAPI document (handlers build them directly). */
export const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  prompt_tokens_details: z.object({ cached_tokens: z.number().int() }).optional(),
});

const tokenLogprobSchema = z.object({
  token: z.string().describe("The token's text; a token that is part of a UTF-8 character is spelled `bytes:\\xNN...`."),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable().describe("The token's own bytes."),
});

export const chatLogprobsSchema = z
  .object({ content: z.array(tokenLogprobSchema.extend({ top_logprobs: z.array(tokenLogprobSchema) })).nullable() })
  .nullable();

const finishReasonSchema = z.enum(["stop", "length"]).nullable();
const chatFinishReasonSchema = z.enum(["stop", "length", "tool_calls"]).nullable();

const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string().describe("JSON, following the function's parameters schema.") }),
});

const toolCallDeltaSchema = z.object({
  index: z.number().int(),
  id: z.string().optional().describe("On the call's first delta, with its type and name."),
  type: z.literal("function").optional(),
  function: z.object({ name: z.string().optional(), arguments: z.string().optional() }),
});

export const chatCompletionResponseSchema = z.object({
  id: z.string(),
  object: z.literal("chat.completion"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({
        role: z.literal("assistant"),
        content: z.string().nullable().describe("Null when the message is only a tool call."),
        tool_calls: z.array(toolCallSchema).optional(),
      }),
      logprobs: chatLogprobsSchema,
      finish_reason: chatFinishReasonSchema,
    }),
  ),
  usage: usageSchema,
});

export const chatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal("chat.completion.chunk"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({
        role: z.literal("assistant").optional(),
        content: z.string().nullable().optional(),
        tool_calls: z.array(toolCallDeltaSchema).optional(),
      }),
      logprobs: chatLogprobsSchema.optional(),
      finish_reason: chatFinishReasonSchema,
    }),
  ),
  usage: usageSchema.nullable().optional(),
});

export const completionLogprobsSchema = z
  .object({
    tokens: z.array(z.string()).describe("Each token's exact text; a token that is part of a UTF-8 character is spelled `bytes:\\xNN...`."),
    token_logprobs: z.array(z.number().nullable()).describe("Null for the first prompt token (echo)."),
    top_logprobs: z
      .array(z.record(z.string(), z.number()).nullable())
      .describe("The N most likely tokens and the chosen one; null for the first prompt token (echo)."),
    text_offset: z.array(z.number().int()).describe("Where each token's text starts in the choice's text."),
  })
  .nullable();

export const completionResponseSchema = z.object({
  id: z.string(),
  object: z.literal("text_completion"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobsSchema,
      finish_reason: finishReasonSchema,
    }),
  ),
  usage: usageSchema.nullable().optional(),
});

export const embeddingListSchema = z.object({
  object: z.literal("list"),
  data: z.array(
    z.object({
      object: z.literal("embedding"),
      index: z.number().int(),
      embedding: z
        .union([z.array(z.number()), z.string()])
        .describe("node-llama-cpp's embedding (not normalised); a base64 string of little-endian float32 with encoding_format base64."),
    }),
  ),
  model: z.string(),
  usage: z.object({ prompt_tokens: z.number().int(), total_tokens: z.number().int() }),
});

export const tokenizeResponseSchema = z.object({
  tokens: z.union([
    z.array(z.number().int()),
    z.array(z.object({ id: z.number().int(), piece: z.union([z.string(), z.array(z.number().int())]) })),
  ]),
});

export const detokenizeResponseSchema = z.object({ content: z.string() });

export const loriSummarySchema = z.object({
  variant: z.enum(["lora", "lori-d", "lori-s"]),
  rank: z.number().int(),
  rank_pattern: z.record(z.string(), z.number().int()),
  alpha: z.number(),
  sparsity: z.number(),
  seed: z.number().int().nullable(),
  lineage: z.array(z.record(z.string(), z.unknown())),
});

export const modelObjectSchema = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
  parent: z.string().nullable().optional().describe("For an adapter: the base model it applies to"),
  meta: z.record(z.string(), z.unknown()).optional(),
  lori: loriSummarySchema.optional(),
});

export const modelListSchema = z.object({ object: z.literal("list"), data: z.array(modelObjectSchema) });

export const errorEnvelopeSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});

export const adapterObjectSchema = z.object({
  id: z.string(),
  object: z.literal("adapter"),
  created: z.number().int(),
  parent: z.string().nullable().describe("The served base model this adapter was built for"),
  hash: z.string().describe("sha256 of the adapter's files"),
  bytes: z.number().int(),
  target_modules: z.union([z.array(z.string()), z.string()]),
  lori: loriSummarySchema,
});

export const adapterListSchema = z.object({ object: z.literal("list"), data: z.array(adapterObjectSchema) });
