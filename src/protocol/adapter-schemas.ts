import { z } from "zod";
import { MAX_ABS_WEIGHT, MAX_MERGE_INPUTS, weightProblem } from "../lora/merge.js";

/** Request bodies of the adapter API (POST /adapters, POST /adapters/merge). */
export const registerAdapterSchema = z.object({
  name: z.string().min(1),
  path: z.string().min(1).describe("A directory under --adapters-dir or an --adapter-root"),
});

/** The same rules as the request `adapter` field: finite, non-zero, |w| <= MAX_ABS_WEIGHT. */
const mergeWeightSchema = z
  .number()
  .superRefine((weight, ctx) => {
    const problem = weightProblem(weight);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .meta({ minimum: -MAX_ABS_WEIGHT, maximum: MAX_ABS_WEIGHT, description: `finite, non-zero, |weight| <= ${MAX_ABS_WEIGHT}` });

export const mergeAdaptersSchema = z.object({
  method: z.enum(["cat", "linear"]),
  adapters: z
    .array(z.object({ name: z.string().min(1), weight: mergeWeightSchema.default(1) }))
    .min(1)
    .max(MAX_MERGE_INPUTS, `at most ${MAX_MERGE_INPUTS} adapters per merge`)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      items.forEach(({ name }, i) => {
        if (seen.has(name)) ctx.addIssue({ code: "custom", message: `the adapter '${name}' is listed twice`, path: [i, "name"] });
        seen.add(name);
      });
    }),
  name: z.string().min(1),
});
