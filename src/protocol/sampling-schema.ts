import { z } from "zod";

/** Sampling fields shared by chat and text completions, in the order of the OpenAI reference. */
export const stopSchema = z
  .union([z.string(), z.array(z.string()).max(16)])
  .nullable()
  .optional()
  .describe("Up to 16 sequences where generation stops; the stop text is not returned.");

export const streamOptionsSchema = z.object({ include_usage: z.boolean().optional() }).nullable().optional();

export const samplingFields = {
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  logit_bias: z
    .record(z.string().regex(/^\d+$/, "keys must be token ids"), z.number().min(-100).max(100))
    .nullable()
    .optional()
    .describe(
      "Token id -> bias added to its logit, -100..100; -100 bans the token. Biases on end-of-generation tokens are not applied (use `ignore_eos`).",
    ),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  n: z
    .number()
    .int()
    .min(1)
    .max(128)
    .nullable()
    .optional()
    .describe("Choices to generate, each on its own sequence; choice i samples with seed + i. At most --parallel × --max-lanes."),
  seed: z.number().int().nullable().optional().describe("Same seed and request give the same output."),
  stop: stopSchema,
  stream: z.boolean().nullable().optional(),
  stream_options: streamOptionsSchema,
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  user: z.string().optional(),
  // Extensions (llama.cpp / vLLM names).
  top_k: z.number().int().min(0).nullable().optional().describe("Extension: keep the k most likely tokens (0 = off)."),
  min_p: z.number().min(0).max(1).nullable().optional().describe("Extension: min-p sampling."),
  repeat_penalty: z.number().min(0).nullable().optional().describe("Extension: llama.cpp repeat penalty (1 = off)."),
  ignore_eos: z.boolean().nullable().optional().describe("Extension: keep generating past end-of-sequence tokens."),
} as const;
