import { z } from "zod";

/** llama.cpp server's `POST /tokenize`, plus `model` to pick one of several served models. */
export const tokenizeRequestSchema = z
  .object({
    content: z.string().describe("The text to tokenize."),
    add_special: z.boolean().optional().describe("Insert the model's special tokens (BOS). Default false."),
    parse_special: z.boolean().optional().describe("Read special-token text such as `<|im_start|>` as that token. Default true."),
    with_pieces: z
      .boolean()
      .optional()
      .describe("Return `{id, piece}` objects; `piece` is a string, or the byte values when not valid UTF-8 alone."),
    model: z.string().optional().describe("Extension: a served model id (or an adapter's, meaning its base)."),
  })
  .describe("llama.cpp server's tokenize request.");

/** llama.cpp server's `POST /detokenize`, plus `model`. */
export const detokenizeRequestSchema = z
  .object({
    tokens: z.array(z.number().int().min(0)).describe("Token ids to turn back into text."),
    model: z.string().optional().describe("Extension: a served model id (or an adapter's, meaning its base)."),
  })
  .describe("llama.cpp server's detokenize request.");

export type TokenizeRequest = z.infer<typeof tokenizeRequestSchema>;
export type DetokenizeRequest = z.infer<typeof detokenizeRequestSchema>;
