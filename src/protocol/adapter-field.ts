import { z } from "zod";
import { apiErrors } from "../errors/api-error.js";

const adapterItemSchema = z.union([
  z.string().min(1),
  z.object({
    name: z.string().min(1),
    weight: z
      .number()
      .refine(Number.isFinite, "must be a finite number")
      .refine((w) => w !== 0, "must be non-zero")
      .default(1),
  }),
]);

/** Extension: the adapters to apply to this request, as their exact weighted sum. */
export const adapterFieldSchema = z
  .union([z.string().min(1), z.array(adapterItemSchema).max(16)])
  .optional()
  .describe(
    "Extension: adapter name, or a list of names / {name, weight} (weight any finite non-zero number, default 1). " +
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
