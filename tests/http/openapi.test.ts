import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { openApiYaml } from "../../src/protocol/openapi-document.js";

describe("openapi.yaml", () => {
  it("is exactly what the zod schemas generate (run `npm run openapi` after changing them)", () => {
    const committed = readFileSync(new URL("../../openapi.yaml", import.meta.url), "utf8");
    expect(committed).toBe(openApiYaml());
  });

  it("documents every route with the request schemas' fields", () => {
    const doc = parse(openApiYaml()) as {
      paths: Record<string, unknown>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/adapters",
        "/adapters/merge",
        "/adapters/{name}",
        "/detokenize",
        "/health",
        "/metrics",
        "/openapi.yaml",
        "/ready",
        "/tokenize",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/files",
        "/v1/files/{file_id}",
        "/v1/files/{file_id}/content",
        "/v1/fine_tuning/jobs",
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
      ].sort(),
    );
    const chat = doc.components.schemas.ChatCompletionRequest!.properties!;
    for (const field of [
      "messages",
      "stream",
      "stream_options",
      "max_completion_tokens",
      "response_format",
      "logprobs",
      "top_k",
      "ignore_eos",
      "adapter",
      "n",
      "logit_bias",
      "tools",
      "tool_choice",
    ]) {
      expect(chat).toHaveProperty(field);
    }
    const job = doc.components.schemas.CreateFineTuningJobRequest!.properties!;
    for (const field of ["model", "training_file", "validation_file", "suffix", "seed", "method", "hyperparameters", "lori"]) {
      expect(job).toHaveProperty(field);
    }
  });
});
