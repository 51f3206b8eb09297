import { z } from "zod";
import { adapterFieldSchema } from "./adapter-field.js";
import { samplingFields } from "./sampling-schema.js";

const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

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
    tool_calls: z.array(toolCallSchema).optional(),
  }),
  z.object({ role: z.literal("tool"), content: contentSchema, tool_call_id: z.string() }),
]);

const functionNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, underscores or dashes");

export const toolSchema = z.object({
  type: z.literal("function"),
  function: z.object({
    name: functionNameSchema,
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullable().optional(),
  }),
});

export const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
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
    tools: z
      .array(toolSchema)
      .max(128)
      .optional()
      .describe("Functions the model may call, in the chat template's tool format (400 if the template has none)."),
    tool_choice: toolChoiceSchema
      .optional()
      .describe(
        "`auto` (default with tools), `none`, `required`, or a function by name: a forced call's arguments follow the function's JSON schema (grammar-constrained).",
      ),
    parallel_tool_calls: z.boolean().optional().describe("Accepted; at most one call is made per response."),
    adapter: adapterFieldSchema,
  })
  .describe("OpenAI chat completion request; unknown fields are ignored.");

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type ChatMessage = z.infer<typeof chatMessageSchema>;
export type Tool = z.infer<typeof toolSchema>;
export type ToolChoice = z.infer<typeof toolChoiceSchema>;
export type ResponseFormat = z.infer<typeof responseFormatSchema>;
