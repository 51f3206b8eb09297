import { z } from "zod";
import { adapterFieldSchema } from "./adapter-field.js";
import { samplingFields } from "./sampling-schema.js";

const textPartSchema = z.object({ type: z.literal("text"), text: z.string() });

/** Message content: a string or an array of text parts (other part types are refused by name). */
const contentSchema = z.union([z.string(), z.array(textPartSchema)]);

export const chatMessageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: contentSchema, name: z.string().optional() }),
  z.object({ role: z.literal("developer"), content: contentSchema, name: z.string().optional() }),
  z.object({ role: z.literal("user"), content: contentSchema, name: z.string().optional() }),
  z.object({
    role: z.literal("assistant"),
    content: contentSchema.nullable().optional(),
    name: z.string().optional(),
  }),
]);

export const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string(),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional(),
    }),
  }),
]);

export const chatCompletionRequestSchema = z
  .object({
    messages: z.array(chatMessageSchema).min(1),
    model: z.string().optional().describe("A served model id; defaults to the first model."),
    ...samplingFields,
    logprobs: z.boolean().nullable().optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    max_completion_tokens: z.number().int().min(1).nullable().optional(),
    response_format: responseFormatSchema.optional(),
    adapter: adapterFieldSchema,
  })
  .describe("OpenAI chat completion request; unknown fields are ignored.");

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type ChatMessage = z.infer<typeof chatMessageSchema>;
export type ResponseFormat = z.infer<typeof responseFormatSchema>;
