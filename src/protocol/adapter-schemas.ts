import { z } from "zod";
import { MAX_ABS_WEIGHT, MAX_MERGE_INPUTS, weightProblem } from "../lora/merge.js";
import {
  DEFAULT_DARE_SEED,
  DEFAULT_DENSITY,
  DEFAULT_MAJORITY_SIGN_METHOD,
  HTTP_PARAMETER_NAMES,
  MAJORITY_SIGN_METHODS,
  MERGE_METHODS,
  mergeParameterProblem,
} from "../lora/merge-options.js";

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

export const mergeAdaptersSchema = z
  .object({
    method: z
      .enum(MERGE_METHODS)
      .describe(
        "cat: exact weighted sum (ranks add up); linear, ties, dare_linear, dare_ties, magnitude_prune: PEFT's A/B-wise " +
          "merges (equal ranks); svd: truncated SVD of the weighted sum of delta W",
      ),
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
    density: z
      .number()
      .gt(0)
      .lte(1)
      .optional()
      .describe(`ties, dare_linear, dare_ties, magnitude_prune only: fraction of each task tensor kept (default ${DEFAULT_DENSITY})`),
    majority_sign_method: z
      .enum(MAJORITY_SIGN_METHODS)
      .optional()
      .describe(`ties, dare_ties only: sign election by sum (total) or by count (frequency) (default ${DEFAULT_MAJORITY_SIGN_METHOD})`),
    seed: z
      .number()
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe(
        `dare_linear, dare_ties only: seed of the random pruning; the same seed gives the same adapter (default ${DEFAULT_DARE_SEED})`,
      ),
    rank: z.number().int().min(1).optional().describe("svd only: rank of the result (default the largest input rank)"),
  })
  .superRefine((body, ctx) => {
    const problem = mergeParameterProblem(body.method, {
      density: body.density,
      majoritySignMethod: body.majority_sign_method,
      seed: body.seed,
      rank: body.rank,
    });
    if (problem) ctx.addIssue({ code: "custom", message: problem.message, path: [HTTP_PARAMETER_NAMES[problem.parameter]] });
  });
