import type { Context } from "hono";
import type { z } from "zod";
import { apiErrors } from "../errors/api-error.js";

/** Parses and validates a JSON body; every failure becomes a 400 that names the field. */
export async function readJsonBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw apiErrors.invalidJson((error as Error).message);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const param = issue.path.length > 0 ? issue.path.map(String).join(".") : null;
    throw apiErrors.invalidField(param, param ? `Invalid '${param}': ${issue.message}` : issue.message);
  }
  return parsed.data;
}
