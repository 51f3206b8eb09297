import { randomBytes } from "node:crypto";

/** An OpenAI-style response id: `chatcmpl-...`, `cmpl-...`. */
export function completionId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString("hex")}`;
}
