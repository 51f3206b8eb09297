import { Hono, type Context, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { KindedError } from "../errors/error-kinds.js";
import type { FineTuningService } from "../fine-tuning/fine-tuning-service.js";
import { createJobRequestSchema } from "../fine-tuning/job-request.js";
import { isTerminal, type JobEvent } from "../fine-tuning/job-store.js";
import { checkpointObjects, jobObject, paginate } from "../fine-tuning/views.js";
import { apiErrors } from "../errors/api-error.js";
import { mayTrain } from "../serving/principal.js";
import { readJsonBody } from "../http/read-json-body.js";
import { sseResponse } from "../http/sse.js";
import { trainRequired } from "./files.js";

export const listQuerySchema = z.object({
  after: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

/**
 * OpenAI's fine-tuning jobs API. Creating and cancelling need an admin key or the `train` grant; a job (its
 * events, checkpoints and result) is visible only to its creator and admins.
 */
export function fineTuningRoutes(service: FineTuningService): Hono {
  const app = new Hono();
  const visible = (c: Context) => {
    const id = c.req.param("id") ?? "";
    const job = service.jobs.get(id);
    if (!job || !service.sees(c.get("principal"), job.owner)) {
      throw new KindedError("not_found", `No such fine-tuning job: '${id}'.`, "fine_tuning_job_not_found", "fine_tuning_job_id");
    }
    return job;
  };
  const query = (c: Context) => {
    const parsed = listQuerySchema.safeParse(c.req.query());
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw apiErrors.invalidField(String(issue.path[0] ?? ""), `Invalid '${String(issue.path[0] ?? "")}': ${issue.message}`);
    }
    return parsed.data;
  };

  app.post("/v1/fine_tuning/jobs", async (c) => {
    const principal = c.get("principal");
    if (!mayTrain(principal)) throw trainRequired();
    const request = await readJsonBody(c, createJobRequestSchema);
    return c.json(jobObject(await service.createJob(principal, request)));
  });

  app.get("/v1/fine_tuning/jobs", (c) => {
    const { after, limit } = query(c);
    const principal = c.get("principal");
    const jobs = service.jobs
      .list()
      .filter((j) => service.sees(principal, j.owner))
      .reverse();
    const page = paginate(jobs, after, limit);
    return c.json({ object: "list", data: page.data.map(jobObject), has_more: page.has_more });
  });

  app.get("/v1/fine_tuning/jobs/:id", (c) => c.json(jobObject(visible(c))));

  app.post("/v1/fine_tuning/jobs/:id/cancel", async (c) => {
    const job = visible(c);
    if (!mayTrain(c.get("principal"))) throw trainRequired();
    return c.json(jobObject(await service.cancel(job)));
  });

  app.get("/v1/fine_tuning/jobs/:id/events", (c) => {
    const job = visible(c);
    if (c.req.query("stream") === "true") return streamEvents(service, job.id, c.req.raw.signal);
    const { after, limit } = query(c);
    const page = paginate([...service.jobs.eventsOf(job.id)].reverse(), after, limit);
    return c.json({ object: "list", data: page.data, has_more: page.has_more });
  });

  app.get("/v1/fine_tuning/jobs/:id/checkpoints", (c) => {
    const { after, limit } = query(c);
    const page = paginate([...checkpointObjects(visible(c))].reverse(), after, limit);
    return c.json({
      object: "list",
      data: page.data,
      has_more: page.has_more,
      first_id: page.data[0]?.id ?? null,
      last_id: page.data.at(-1)?.id ?? null,
    });
  });

  return app;
}

/**
 * The job's events as Server-Sent Events, oldest first: everything so far, then each new one, ending with
 * `data: [DONE]` when the job reaches a terminal status (at once for a finished job).
 */
function streamEvents(service: FineTuningService, jobId: string, clientSignal: AbortSignal): Response {
  const pending: JobEvent[] = [...service.jobs.eventsOf(jobId)];
  let ended = isTerminal(service.jobs.get(jobId)!.status);
  let wake: (() => void) | undefined;
  const unsubscribe = ended
    ? () => undefined
    : service.jobs.subscribe(jobId, (event) => {
        if (event) pending.push(event);
        else ended = true;
        wake?.();
      });
  const onAbort = () => {
    ended = true;
    wake?.();
  };
  clientSignal.addEventListener("abort", onAbort, { once: true });
  async function* events(): AsyncGenerator<JobEvent> {
    for (;;) {
      const next = pending.shift();
      if (next) {
        yield next;
        continue;
      }
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  }
  return sseResponse(events(), () => {
    unsubscribe();
    clientSignal.removeEventListener("abort", onAbort);
  });
}

/**
 * Sets each request's principal to decide fine-tuned adapters by their job's owner, before any route reads it:
 * the creator (and admins) may use `ft-*` adapters whatever their allow-list says, everyone else never sees them.
 */
export function fineTunedAdapterAccess(service: FineTuningService): MiddlewareHandler {
  return async (c, next) => {
    const principal = c.get("principal");
    c.set("principal", { ...principal, adapterAccess: service.adapterAccess(principal) });
    return next();
  };
}
