import { z } from "zod";

/** Request bodies of the adapter API (POST /adapters, POST /adapters/merge). */
export const registerAdapterSchema = z.object({
  name: z.string().min(1),
  path: z.string().min(1).describe("A directory under --adapters-dir or an --adapter-root"),
});

export const mergeAdaptersSchema = z.object({
  method: z.enum(["cat", "linear"]),
  adapters: z
    .array(z.object({ name: z.string().min(1), weight: z.number().refine(Number.isFinite, "must be finite").default(1) }))
    .min(1),
  name: z.string().min(1),
});
