import type { OpenApiBuilder, ResponseObject } from "openapi3-ts/oas31";
import { z } from "zod";
import { createJobRequestSchema } from "../fine-tuning/job-request.js";
import { JOB_STATUSES } from "../fine-tuning/job-store.js";
import { FILE_PURPOSES } from "../fine-tuning/file-store.js";

/** Response shapes of /v1/files and /v1/fine_tuning (OpenAI's), for the OpenAPI document. */

const fileObjectSchema = z.object({
  id: z.string(),
  object: z.literal("file"),
  bytes: z.number().int(),
  created_at: z.number().int(),
  expires_at: z.null(),
  filename: z.string(),
  purpose: z.enum(FILE_PURPOSES),
  status: z.literal("processed"),
  status_details: z.null(),
});

const hyperparameters = z.object({ n_epochs: z.number().int(), batch_size: z.number().int(), learning_rate_multiplier: z.number() });

const jobObjectSchema = z.object({
  object: z.literal("fine_tuning.job"),
  id: z.string(),
  model: z.string(),
  created_at: z.number().int(),
  finished_at: z.number().int().nullable(),
  fine_tuned_model: z.string().nullable().describe("ft:<base>:<suffix>:<job-id>, usable as `model` once the job succeeded"),
  organization_id: z.string(),
  result_files: z.array(z.string()),
  status: z.enum(JOB_STATUSES),
  validation_file: z.string().nullable(),
  training_file: z.string(),
  hyperparameters,
  method: z.object({ type: z.literal("supervised"), supervised: z.object({ hyperparameters }) }),
  trained_tokens: z.number().int().nullable(),
  error: z.object({ code: z.string(), message: z.string(), param: z.string().nullable() }).nullable(),
  user_provided_suffix: z.string().nullable(),
  seed: z.number().int(),
  estimated_finish: z.number().int().nullable(),
  integrations: z.array(z.unknown()),
  metadata: z.record(z.string(), z.string()).nullable(),
  lori: z.record(z.string(), z.unknown()).describe("Extension: the resolved LoRI training options and the stored adapter name"),
});

const jobEventSchema = z.object({
  object: z.literal("fine_tuning.job.event"),
  id: z.string(),
  created_at: z.number().int(),
  level: z.enum(["info", "warn", "error"]),
  message: z.string(),
  type: z.enum(["message", "metrics"]),
  data: z
    .record(z.string(), z.unknown())
    .nullable()
    .describe("metrics: step, total_steps, phase, train_loss or valid_loss, tokens_per_s, elapsed_s, eta_s"),
});

const checkpointSchema = z.object({
  object: z.literal("fine_tuning.job.checkpoint"),
  id: z.string(),
  created_at: z.number().int(),
  fine_tuned_model_checkpoint: z.string(),
  fine_tuning_job_id: z.string(),
  metrics: z.object({ step: z.number().int(), train_loss: z.number().nullable(), valid_loss: z.number().nullable() }),
  step_number: z.number().int(),
});

const page = <T extends z.ZodType>(item: T) => z.object({ object: z.literal("list"), data: z.array(item), has_more: z.boolean() });

export const fineTuningComponents = {
  File: fileObjectSchema,
  FileList: page(fileObjectSchema),
  FileDeleted: z.object({ id: z.string(), object: z.literal("file"), deleted: z.literal(true) }),
  CreateFineTuningJobRequest: createJobRequestSchema,
  FineTuningJob: jobObjectSchema,
  FineTuningJobList: page(jobObjectSchema),
  FineTuningJobEvent: jobEventSchema,
  FineTuningJobEventList: page(jobEventSchema),
  FineTuningJobCheckpointList: page(checkpointSchema),
} as const;

/** Adds the files and fine-tuning paths; `errorResponse` and `ref` come from the main document. */
export function addFineTuningPaths(
  builder: OpenApiBuilder,
  ref: (name: keyof typeof fineTuningComponents) => { $ref: string },
  errorResponse: (description: string) => ResponseObject,
): void {
  const json = (name: keyof typeof fineTuningComponents, description: string) => ({
    description,
    content: { "application/json": { schema: ref(name) } },
  });
  const idParam = (name: string) => ({ name, in: "path" as const, required: true, schema: { type: "string" as const } });
  const listParams = [
    { name: "after", in: "query" as const, schema: { type: "string" as const }, description: "Id of the last item of the previous page" },
    { name: "limit", in: "query" as const, schema: { type: "integer" as const, minimum: 1, maximum: 100, default: 20 } },
  ];
  const notFound = errorResponse("No such file or job (or it belongs to another key)");
  const forbidden = errorResponse("The key has neither the admin role nor the 'train' grant");

  builder.addPath("/v1/files", {
    post: {
      operationId: "createFile",
      summary: "Upload a file (multipart: file, purpose). fine-tune files are checked line by line; admin key or 'train' grant",
      requestBody: {
        required: true,
        content: {
          "multipart/form-data": {
            schema: {
              type: "object",
              required: ["file", "purpose"],
              properties: { file: { type: "string", format: "binary" }, purpose: { type: "string", enum: [...FILE_PURPOSES] } },
            },
          },
        },
      },
      responses: {
        "200": json("File", "The stored file"),
        "400": errorResponse("Invalid JSONL: every bad line named with its number and problem"),
        "403": forbidden,
        "413": errorResponse("Larger than --max-file-mb"),
      },
    },
    get: {
      operationId: "listFiles",
      summary: "Files of the caller's key (all for admins), newest first",
      parameters: [{ name: "purpose", in: "query", schema: { type: "string" } }],
      responses: { "200": json("FileList", "Files") },
    },
  });
  builder.addPath("/v1/files/{file_id}", {
    get: {
      operationId: "retrieveFile",
      summary: "One file",
      parameters: [idParam("file_id")],
      responses: { "200": json("File", "The file"), "404": notFound },
    },
    delete: {
      operationId: "deleteFile",
      summary: "Delete a file",
      parameters: [idParam("file_id")],
      responses: { "200": json("FileDeleted", "Deleted"), "404": notFound },
    },
  });
  builder.addPath("/v1/files/{file_id}/content", {
    get: {
      operationId: "retrieveFileContent",
      summary: "The file's bytes",
      parameters: [idParam("file_id")],
      responses: {
        "200": { description: "The content", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
        "404": notFound,
      },
    },
  });
  builder.addPath("/v1/fine_tuning/jobs", {
    post: {
      operationId: "createFineTuningJob",
      summary:
        "Start a fine-tuning job (validating_files -> queued -> running -> succeeded | failed | cancelled); admin key or 'train' grant",
      requestBody: { required: true, content: { "application/json": { schema: ref("CreateFineTuningJobRequest") } } },
      responses: {
        "200": json("FineTuningJob", "The job"),
        "400": errorResponse("A field out of range or an unusable file (param names it)"),
        "403": forbidden,
        "404": errorResponse("Unknown base model or file"),
      },
    },
    get: {
      operationId: "listFineTuningJobs",
      summary: "Jobs of the caller's key (all for admins), newest first",
      parameters: listParams,
      responses: { "200": json("FineTuningJobList", "Jobs") },
    },
  });
  builder.addPath("/v1/fine_tuning/jobs/{fine_tuning_job_id}", {
    get: {
      operationId: "retrieveFineTuningJob",
      summary: "One job",
      parameters: [idParam("fine_tuning_job_id")],
      responses: { "200": json("FineTuningJob", "The job"), "404": notFound },
    },
  });
  builder.addPath("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", {
    post: {
      operationId: "cancelFineTuningJob",
      summary: "Cancel a job: a running trainer stops cleanly and no adapter is left",
      parameters: [idParam("fine_tuning_job_id")],
      responses: {
        "200": json("FineTuningJob", "The cancelled job"),
        "400": errorResponse("The job has finished already"),
        "404": notFound,
      },
    },
  });
  builder.addPath("/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", {
    get: {
      operationId: "listFineTuningEvents",
      summary:
        "Events, newest first (train/valid loss, step, tokens/s, ETA); with stream=true an SSE stream, oldest first, ending with data: [DONE] when the job ends",
      parameters: [idParam("fine_tuning_job_id"), ...listParams, { name: "stream", in: "query", schema: { type: "boolean" } }],
      responses: {
        "200": {
          description: "Events",
          content: {
            "application/json": { schema: ref("FineTuningJobEventList") },
            "text/event-stream": { schema: ref("FineTuningJobEvent") },
          },
        },
        "404": notFound,
      },
    },
  });
  builder.addPath("/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", {
    get: {
      operationId: "listFineTuningCheckpoints",
      summary: "Servable checkpoints of a job (the final adapter once it succeeded)",
      parameters: [idParam("fine_tuning_job_id"), ...listParams],
      responses: { "200": json("FineTuningJobCheckpointList", "Checkpoints"), "404": notFound },
    },
  });
}
