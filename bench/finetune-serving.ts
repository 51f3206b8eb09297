// What a fine-tuning job costs serving, and what serving costs the job, on the demo model:
//  - decode tokens/s of a client while one job trains, as a ratio to the same client on an idle server;
//  - the job's training tokens/s, as a ratio to the same training run alone (the path `lori-server train` takes).
// Run: npx tsx bench/finetune-serving.ts [--training-threads N] [--threads N] [--requests N] [--max-tokens N]
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { resolveServeConfig } from "../src/config/serve-config.js";
import { defaultTrainingThreads } from "../src/fine-tuning/fine-tuning-service.js";
import { createServerCore, type ServerCore } from "../src/server/start-server.js";
import { trainAdapter } from "../src/train/train-adapter.js";
import { secretWordTask, TRAIN_NAMES } from "../tests/finetune/helpers.js";
import { median } from "./support/bench-model.js";

const { values } = parseArgs({
  options: {
    "training-threads": { type: "string" },
    threads: { type: "string", default: "1" },
    requests: { type: "string", default: "6" },
    "max-tokens": { type: "string", default: "96" },
    rounds: { type: "string", default: "3" },
  },
});
const rounds = Number(values.rounds);
const trainingThreads = values["training-threads"] ? Number(values["training-threads"]) : defaultTrainingThreads();
const requests = Number(values.requests);
const maxTokens = Number(values["max-tokens"]);
const model = resolve("models/lori-demo.gguf");
// The fine-tuning tests' secret-word task, on its first 20 askers (their names also vary the client's prompts).
const names = TRAIN_NAMES.slice(0, 20);
const jsonl = secretWordTask().lines.slice(0, names.length).join("\n");
const trainSteps = 40;
const lori = { method: "lori-d", rank: 16, steps: trainSteps };
const batch = 4;

const dir = await mkdtemp(join(tmpdir(), "lori-bench-ft-"));
let core: ServerCore | undefined;
try {
  const config = resolveServeConfig(
    {
      models: [`lori-demo=${model}`],
      gpu: "off",
      threads: Number(values.threads),
      parallel: 1,
      contextSize: 512,
      logRequests: false,
      adaptersPollMs: 0,
      dataDir: join(dir, "data"),
      adaptersDir: join(dir, "adapters"),
      trainingThreads,
    },
    {},
  );
  core = await createServerCore(config);
  const server = core;
  const request = async (method: string, path: string, body?: unknown) => {
    const init: RequestInit =
      body === undefined
        ? { method }
        : body instanceof FormData
          ? { method, body }
          : { method, body: JSON.stringify(body), headers: { "Content-Type": "application/json" } };
    const response = await server.app.request(path, init);
    const json = (await response.json()) as Record<string, any>;
    if (response.status >= 400) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
    return json;
  };
  /** Sequential chat completions that always generate max_tokens; decode tokens over wall time. */
  const decodeTokensPerSecond = async (keepGoing: (i: number) => boolean = (i) => i < requests) => {
    let tokens = 0;
    const started = performance.now();
    for (let i = 0; keepGoing(i); i++) {
      const r = await request("POST", "/v1/chat/completions", {
        model: "lori-demo",
        messages: [{ role: "user", content: `Tell me a story about ${names[i % names.length]}.` }],
        temperature: 0,
        max_tokens: maxTokens,
        ignore_eos: true,
      });
      tokens += r.usage.completion_tokens as number;
    }
    return tokens / ((performance.now() - started) / 1000);
  };

  await decodeTokensPerSecond(); // warm-up
  const form = new FormData();
  form.set("purpose", "fine-tune");
  form.set("file", new Blob([jsonl]), "bench.jsonl");
  const file = await request("POST", "/v1/files", form);

  // Idle and busy windows alternate, so drift in the machine's other load hits both alike; medians are reported.
  const idleRuns: number[] = [];
  const busyRuns: number[] = [];
  const jobRuns: number[] = [];
  for (let round = 0; round < rounds; round++) {
    idleRuns.push(await decodeTokensPerSecond());
    const job = await request("POST", "/v1/fine_tuning/jobs", {
      model: "lori-demo",
      training_file: file.id,
      seed: 1,
      hyperparameters: { batch_size: batch },
      lori,
    });
    // The client decodes for as long as the job trains; the job's rate is its trainer's average over the run.
    const training = () => !["succeeded", "failed", "cancelled"].includes(server.fineTuning.jobs.get(job.id)!.status);
    while (server.fineTuning.jobs.get(job.id)!.status !== "running") await new Promise((r) => setTimeout(r, 50));
    busyRuns.push(await decodeTokensPerSecond(training));
    while (training()) await new Promise((r) => setTimeout(r, 50));
    const done = server.fineTuning.jobs.get(job.id)!;
    if (done.status !== "succeeded") throw new Error(`bench job ${done.status}: ${JSON.stringify(done.error)}`);
    const summary = server.adapters.get(done.adapter)!.config.lori!.training as { tokens_per_s: number };
    jobRuns.push(summary.tokens_per_s);
  }
  const idle = median(idleRuns);
  const busy = median(busyRuns);
  const jobTokensPerSecond = median(jobRuns);

  // The same training alone, as `lori-server train` runs it (no serving, inherited priority).
  const data = join(dir, "bench.jsonl");
  await writeFile(data, jsonl);
  const alone = await trainAdapter({
    base: model,
    data: { file: data },
    valFraction: 0,
    name: "alone",
    adaptersDir: join(dir, "alone"),
    method: "lori-d",
    rank: lori.rank,
    seed: 1,
    lr: 5e-3,
    batch,
    steps: trainSteps,
    run: { gpu: "off", threads: trainingThreads, forwardSigint: false },
  });
  const cliTokensPerSecond = alone.phases.at(-1)!.tokens_per_s;
  console.log(
    JSON.stringify(
      {
        model: "lori-demo",
        serving_threads: Number(values.threads),
        training_threads: trainingThreads,
        trainer_priority: 10,
        rounds,
        load_average_1m: +loadavg()[0]!.toFixed(2),
        decode_tokens_per_s: { idle: Math.round(idle), while_training: Math.round(busy), ratio: +(busy / idle).toFixed(3) },
        training_tokens_per_s: {
          in_server: Math.round(jobTokensPerSecond),
          alone: Math.round(cliTokensPerSecond),
          ratio: +(jobTokensPerSecond / cliTokensPerSecond).toFixed(3),
        },
      },
      null,
      2,
    ),
  );
} finally {
  await core?.dispose();
  await rm(dir, { recursive: true, force: true });
}
