import { z } from "zod";
import { TARGET_MODULES, type TargetModule } from "../lora/target-modules.js";
import { METHOD_DEFAULTS } from "../train/method-defaults.js";
import type { TrainMethod } from "../train/native-trainer.js";

/**
 * The body of `POST /v1/fine_tuning/jobs`: OpenAI's fields (supervised method or the legacy top-level
 * `hyperparameters`, "auto" allowed for each) plus our `lori` extension, and how both resolve to the
 * trainer's options. Ranges are checked here, so a bad value is a 400 before any job exists.
 */

const auto = z.literal("auto");

export const hyperparametersSchema = z
  .object({
    n_epochs: z
      .union([auto, z.number().int().min(1).max(50)])
      .optional()
      .describe("Passes over the training file (auto: enough for about 400 examples, 1-25)."),
    batch_size: z
      .union([auto, z.number().int().min(1).max(256)])
      .optional()
      .describe("Examples per step (auto: records / 5, 1-8)."),
    learning_rate_multiplier: z
      .union([auto, z.number().gt(0).max(100)])
      .optional()
      .describe("Scales the method's learning rate (auto: 1)."),
  })
  .strict();

export const loriOptionsSchema = z
  .object({
    method: z.enum(["lori-s", "lori-d", "lora"]).optional().describe("Default lori-d. lori-s trains a sparse B through a calibrated mask."),
    rank: z.number().int().min(1).max(256).optional().describe("Default: the trainer's per method (32)."),
    alpha: z.number().gt(0).max(10_000).optional().describe("Default 2 * rank."),
    sparsity: z.number().min(0).lt(1).optional().describe("lori-s only: fraction of B masked out. Default 0.9."),
    learning_rate: z
      .number()
      .gt(0)
      .max(1)
      .optional()
      .describe("Base learning rate (default: the trainer's per method: lori-d 3e-3, lori-s 1e-2, lora 1e-3)."),
    calibrate: z.boolean().optional().describe("lori-s only: train lori-d first for the mask. Default true (the only mask source here)."),
    calibrate_learning_rate: z.number().gt(0).max(1).optional().describe("lori-s only: learning rate of the calibration. Default 3e-3."),
    steps: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .optional()
      .describe("Optimizer steps instead of epochs (n_epochs must then be absent or auto)."),
    max_len: z.number().int().min(8).max(65_536).optional().describe("Longer examples are truncated. Default 512."),
    targets: z.array(z.enum(TARGET_MODULES)).min(1).optional().describe("Projections to adapt. Default all seven."),
    eval_every: z.number().int().min(0).max(1_000_000).optional().describe("Validation loss every N steps (0: at the end). Default 0."),
  })
  .strict();

export const createJobRequestSchema = z.object({
  model: z.string().min(1).describe("A served base model."),
  training_file: z.string().min(1),
  validation_file: z.string().min(1).nullish(),
  suffix: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,40}$/, "must be 1-40 characters of A-Z, a-z, 0-9, '.', '_', '-'")
    .nullish(),
  seed: z.number().int().min(0).max(2_147_483_647).nullish(),
  hyperparameters: hyperparametersSchema.optional().describe("Legacy; prefer method.supervised.hyperparameters."),
  method: z
    .object({
      type: z.literal("supervised", { message: "only the 'supervised' method is supported" }),
      supervised: z.object({ hyperparameters: hyperparametersSchema.optional() }).optional(),
    })
    .optional(),
  metadata: z.record(z.string(), z.string()).nullish(),
  integrations: z.array(z.unknown()).max(0, "integrations are not supported").nullish(),
  lori: loriOptionsSchema.optional().describe("Extension: LoRI training options."),
});

export type CreateJobRequest = z.infer<typeof createJobRequestSchema>;

/** What a job trains with, every "auto" resolved; persisted with the job so a restart trains the same. */
export interface ResolvedTraining {
  readonly hyperparameters: { readonly n_epochs: number; readonly batch_size: number; readonly learning_rate_multiplier: number };
  readonly method: TrainMethod;
  readonly rank: number;
  readonly alpha: number;
  readonly sparsity: number | null;
  readonly calibrate: boolean;
  readonly learningRate: number;
  readonly calibrateLearningRate: number | null;
  /** Set when `lori.steps` replaces epochs. */
  readonly steps: number | null;
  readonly maxLen: number;
  readonly targets: readonly TargetModule[] | null;
  readonly evalEvery: number;
  readonly seed: number;
}

/** Thrown for a combination of valid fields that does not make sense; the route turns it into a 400. */
export class JobRequestError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = "JobRequestError";
  }
}

/** Resolves "auto" and the per-method defaults; `records` is the training file's record count. */
export function resolveTraining(request: CreateJobRequest, records: number, seed: number): ResolvedTraining {
  if (request.hyperparameters && request.method?.supervised?.hyperparameters) {
    throw new JobRequestError(
      "Give hyperparameters either in method.supervised.hyperparameters or at the top level, not both.",
      "hyperparameters",
    );
  }
  const h = request.method?.supervised?.hyperparameters ?? request.hyperparameters ?? {};
  const lori = request.lori ?? {};
  const method = lori.method ?? "lori-d";
  if (method !== "lori-s") {
    for (const key of ["sparsity", "calibrate", "calibrate_learning_rate"] as const) {
      if (lori[key] !== undefined) throw new JobRequestError(`lori.${key} applies to method lori-s only.`, `lori.${key}`);
    }
  }
  if (method === "lori-s" && lori.calibrate === false) {
    throw new JobRequestError(
      "lori-s needs a mask: over the API it comes from calibration (lori.calibrate must stay true).",
      "lori.calibrate",
    );
  }
  if (lori.steps !== undefined && h.n_epochs !== undefined && h.n_epochs !== "auto") {
    throw new JobRequestError("Give either n_epochs or lori.steps, not both.", "lori.steps");
  }
  const batch = h.batch_size === undefined || h.batch_size === "auto" ? clamp(Math.round(records / 5), 1, 8) : h.batch_size;
  const epochs = h.n_epochs === undefined || h.n_epochs === "auto" ? clamp(Math.ceil(400 / Math.max(1, records)), 1, 25) : h.n_epochs;
  const multiplier = h.learning_rate_multiplier === undefined || h.learning_rate_multiplier === "auto" ? 1 : h.learning_rate_multiplier;
  const learningRate = (lori.learning_rate ?? METHOD_DEFAULTS[method].lr) * multiplier;
  if (!(learningRate <= 1))
    throw new JobRequestError(
      `The learning rate (${learningRate}) must be at most 1; lower learning_rate_multiplier.`,
      "learning_rate_multiplier",
    );
  const rank = lori.rank ?? METHOD_DEFAULTS[method].rank;
  return {
    hyperparameters: { n_epochs: epochs, batch_size: batch, learning_rate_multiplier: multiplier },
    method,
    rank,
    alpha: lori.alpha ?? 2 * rank,
    sparsity: method === "lori-s" ? (lori.sparsity ?? 0.9) : null,
    calibrate: method === "lori-s",
    learningRate,
    calibrateLearningRate: method === "lori-s" ? (lori.calibrate_learning_rate ?? METHOD_DEFAULTS[method].calibrateLr) : null,
    steps: lori.steps ?? null,
    maxLen: lori.max_len ?? 512,
    targets: lori.targets ?? null,
    evalEvery: lori.eval_every ?? 0,
    seed,
  };
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
