import { z } from "zod";
import { adapterFieldSchema } from "./adapter-field.js";

const tokenIds = z.array(z.number().int().min(0)).min(1);

export const embeddingsRequestSchema = z
  .object({
    input: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2048), tokenIds, z.array(tokenIds).min(1).max(2048)])
      .describe("Text or token ids, or a list of either (embedded in one request, in order); no empty input."),
    model: z.string().optional().describe("A served model id or an adapter name (then applied); defaults to the first model."),
    encoding_format: z
      .enum(["float", "base64"])
      .optional()
      .describe("`float` (default): a list of numbers; `base64`: the little-endian float32 bytes, base64-encoded."),
    dimensions: z.number().int().min(1).optional().describe("Only the model's own embedding size is supported."),
    user: z.string().optional(),
    adapter: adapterFieldSchema,
  })
  .describe("OpenAI embeddings request; unknown fields are ignored.");

export type EmbeddingsRequest = z.infer<typeof embeddingsRequestSchema>;
