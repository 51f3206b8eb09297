import { z } from "zod";
import { apiErrors } from "../errors/api-error.js";
import { MAX_ABS_WEIGHT, MAX_MERGE_INPUTS, weightProblem } from "../lora/merge.js";

const adapterItemSchema = z.union([
  z.string().min(1),
  z.object({
    name: z.string().min(1),
    // The same rules as POST /adapters/merge: finite, non-zero, |w| <= MAX_ABS_WEIGHT.
    weight: z
      .number()
      .superRefine((weight, ctx) => {
        const problem = weightProblem(weight);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      })
      .meta({ minimum: -MAX_ABS_WEIGHT, maximum: MAX_ABS_WEIGHT })
      .default(1),
  }),
]);

/** Extension: the adapters to apply to this request, as their exact weighted sum. */
export const adapterFieldSchema = z
  .union([
    z.string().min(1),
    // A refinement rather than .max(): inside a union, zod reports a refinement's message, not "Invalid input".
    z
      .array(adapterItemSchema)
      .superRefine((items, ctx) => {
        if (items.length > MAX_MERGE_INPUTS)
          ctx.addIssue({ code: "custom", message: `at most ${MAX_MERGE_INPUTS} adapters per request, got ${items.length}` });
      })
      .meta({ maxItems: MAX_MERGE_INPUTS }),
  ])
  .optional()
  .describe(
    `Extension: adapter name, or a list of at most ${MAX_MERGE_INPUTS} names / {name, weight} (weight finite, non-zero, |weight| <= ${MAX_ABS_WEIGHT}, default 1). ` +
      "Several adapters apply together as their exact weighted sum; order does not matter.",
  );

export type AdapterField = z.infer<typeof adapterFieldSchema>;

export interface AdapterSelection {
  readonly name: string;
  readonly weight: number;
}

/** Normalises the field to a list; a name given twice is a 400. */
export function normalizeAdapterField(field: AdapterField): AdapterSelection[] {
  if (field === undefined) return [];
  const items = typeof field === "string" ? [field] : field;
  const selections = items.map((item) => (typeof item === "string" ? { name: item, weight: 1 } : item));
  const seen = new Set<string>();
  for (const { name } of selections) {
    if (seen.has(name)) throw apiErrors.invalidField("adapter", `The adapter '${name}' is listed twice.`);
    seen.add(name);
  }
  return selections;
}
