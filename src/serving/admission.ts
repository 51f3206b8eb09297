import { ShuttingDownError } from "../engine/engine-errors.js";
import { GenerationJob, type GenerationRequest } from "../engine/generation-job.js";
import type { ServedModel } from "../engine/served-model.js";
import type { ServingDeps } from "./serving-deps.js";

/** Starts a job unless the server is draining: a lane, a sequence and a compiled adapter set, or an error. */
export async function admitJob(deps: ServingDeps, served: ServedModel, request: GenerationRequest): Promise<GenerationJob> {
  if (deps.lifecycle.draining) throw new ShuttingDownError();
  return GenerationJob.start(served, request);
}
