import { Hono } from "hono";
import type { Token } from "node-llama-cpp";
import { tokenPiece } from "../engine/token-pieces.js";
import { vocabularySize } from "../engine/vocabulary.js";
import { apiErrors } from "../errors/api-error.js";
import type { AppDeps } from "../http/app-deps.js";
import { readJsonBody } from "../http/read-json-body.js";
import { detokenizeRequestSchema, tokenizeRequestSchema } from "../protocol/tokenize-schema.js";
import { resolveTarget } from "../serving/target.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** llama.cpp server's `/tokenize` and `/detokenize`, with the same request and response shapes. */
export function tokenizeRoutes(deps: AppDeps): Hono {
  const app = new Hono();
  app.post("/tokenize", async (c) => {
    const request = await readJsonBody(c, tokenizeRequestSchema);
    const { model } = resolveTarget(deps, c.get("principal"), request.model, undefined).served;
    const tokens = model.tokenize(request.content, request.parse_special ?? true);
    const bos = model.tokens.bos;
    // Like llama.cpp, add_special prepends BOS only for models that want one (and never twice).
    if (request.add_special === true && bos !== null && model.tokens.shouldPrependBosToken && tokens[0] !== bos) tokens.unshift(bos);
    if (request.with_pieces !== true) return c.json({ tokens });
    return c.json({ tokens: tokens.map((id) => ({ id, piece: pieceOf(tokenPiece(model, id).bytes) })) });
  });
  app.post("/detokenize", async (c) => {
    const request = await readJsonBody(c, detokenizeRequestSchema);
    const { model } = resolveTarget(deps, c.get("principal"), request.model, undefined).served;
    const size = vocabularySize(model);
    const bad = request.tokens.find((id) => id >= size);
    if (bad !== undefined) throw apiErrors.invalidField("tokens", `Token id ${bad} is outside the model's vocabulary (${size} tokens).`);
    // Special tokens print as their text, as llama.cpp's server does.
    return c.json({ content: model.detokenize(request.tokens as Token[], true) });
  });
  return app;
}

/** llama.cpp's piece: the text when the token's bytes are valid UTF-8 alone, else the byte values. */
function pieceOf(bytes: readonly number[]): string | number[] {
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return [...bytes];
  }
}
