import { z } from "zod";
import { adapterFieldSchema } from "./adapter-field.js";
import { samplingFields } from "./sampling-schema.js";

export const completionRequestSchema = z
  .object({
    model: z.string().optional().describe("A served model id; defaults to the first model."),
    prompt: z
      .union([
        z.string(),
        z.array(z.number().int().min(0)).min(1),
        z.array(z.union([z.string(), z.array(z.number().int().min(0)).min(1)])).min(1),
      ])
      .describe("One prompt: a string or token ids, or a list holding one of them."),
    echo: z
      .boolean()
      .nullable()
      .optional()
      .describe("Return the prompt before the completion; with `logprobs`, the prompt tokens' log-probs too (the first is null)."),
    logprobs: z
      .number()
      .int()
      .min(0)
      .max(20)
      .nullable()
      .optional()
      .describe(
        "Log-probs of the chosen tokens and of the N most likely ones at each position (N+1 entries when the chosen one is not among them).",
      ),
    suffix: z.string().nullable().optional(),
    ...samplingFields,
    max_tokens: z
      .number()
      .int()
      .min(0)
      .nullable()
      .optional()
      .describe("Default 16. 0 is allowed with `echo` only: score the prompt without generating."),
    adapter: adapterFieldSchema,
  })
  .describe("OpenAI text completion request; unknown fields are ignored.");

export type CompletionRequest = z.infer<typeof completionRequestSchema>;
