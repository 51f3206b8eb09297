import { z } from "zod";
import { adapterFieldSchema } from "./adapter-field.js";
import { samplingFields } from "./sampling-schema.js";

export const completionRequestSchema = z
  .object({
    model: z.string().optional().describe("A served model id; defaults to the first model."),
    prompt: z.string().describe("A single string prompt."),
    echo: z.boolean().nullable().optional(),
    logprobs: z.number().int().min(0).max(20).nullable().optional(),
    suffix: z.string().nullable().optional(),
    ...samplingFields,
    adapter: adapterFieldSchema,
  })
  .describe("OpenAI text completion request; unknown fields are ignored.");

export type CompletionRequest = z.infer<typeof completionRequestSchema>;
