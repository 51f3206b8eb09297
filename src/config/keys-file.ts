import { readFileSync } from "node:fs";
import { z } from "zod";

export const keysFileSchema = z.object({
  keys: z
    .array(
      z.object({
        key: z.string().min(8, "keys must be at least 8 characters"),
        role: z.enum(["admin", "user"]).default("user"),
        /** Adapters this key may see and use; omitted = all. */
        adapters: z.array(z.string().min(1)).optional(),
        /** Extra permissions of a user key: "train" creates files and fine-tuning jobs (admins may anyway). */
        grants: z.array(z.enum(["train"])).optional(),
        name: z.string().optional(),
      }),
    )
    .min(1),
});

export type KeyGrant = z.infer<typeof keysFileSchema>["keys"][number];

/** Reads `--keys-file`: `{"keys": [{"key", "role": "admin"|"user", "adapters"?: [...], "grants"?: ["train"]}]}`. */
export function readKeysFile(file: string): KeyGrant[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`--keys-file ${file}: ${(error as Error).message}`);
  }
  const parsed = keysFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`--keys-file ${file}: ${issue.path.join(".")}: ${issue.message}`);
  }
  return parsed.data.keys;
}
