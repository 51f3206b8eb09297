import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer } from "../support/in-process.js";
import { ensureTrainerBuilt } from "../native/helpers.js";
import { clientFor, SECRET, secretWordTask, waitFor } from "./helpers.js";

const ADMIN = "admin-key-0001";
const TRAINER = "trainer-key-0001";
const OTHER_TRAINER = "trainer-key-0002";
const USER = "plain-user-key-01";

/**
 * The fine-tuning API end to end, driven by the official openai client on the demo model: upload, train,
 * watch the loss fall, serve the result under its ft: id; owners, cancellation and bad inputs.
 */
describe("fine-tuning API (openai client, demo model)", () => {
  let core: ServerCore;
  let admin: OpenAI;
  let trainer: OpenAI;
  let otherTrainer: OpenAI;
  let user: OpenAI;

  beforeAll(async () => {
    ensureTrainerBuilt();
    const dir = await mkdtemp(join(tmpdir(), "lori-ft-keys-"));
    const keysFile = join(dir, "keys.json");
    await writeFile(
      keysFile,
      JSON.stringify({
        keys: [
          { key: ADMIN, role: "admin" },
          { key: TRAINER, role: "user", grants: ["train"], adapters: ["math"] },
          { key: OTHER_TRAINER, role: "user", grants: ["train"] },
          { key: USER, role: "user" },
        ],
      }),
    );
    core = await createInProcessServer({ keysFile, maxFileMb: 0.05, trainingThreads: 1 }, { withDemoAdapters: false });
    [admin, trainer, otherTrainer, user] = [ADMIN, TRAINER, OTHER_TRAINER, USER].map((key) => clientFor(core, key)) as [
      OpenAI,
      OpenAI,
      OpenAI,
      OpenAI,
    ];
  });
  afterAll(async () => {
    await core?.dispose();
  });

  const upload = async (client: OpenAI, lines: string[], name = "train.jsonl") =>
    client.files.create({
      file: await toFile(Buffer.from(`${lines.join("\n")}\n`), name, { type: "application/jsonl" }),
      purpose: "fine-tune",
    });

  it("fine-tunes the demo model on a task it cannot do, then serves the result under its ft: id", async () => {
    const task = secretWordTask();
    const file = await upload(trainer, task.lines);
    expect(file).toMatchObject({ object: "file", purpose: "fine-tune", filename: "train.jsonl", status: "processed" });
    const validation = await upload(trainer, task.lines.slice(0, 4), "valid.jsonl");

    const created = await trainer.fineTuning.jobs.create({
      model: "lori-demo",
      training_file: file.id,
      validation_file: validation.id,
      suffix: "secret",
      seed: 7,
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 4, batch_size: 4 } } },
      // @ts-expect-error our extension
      lori: { method: "lori-d", rank: 8 },
    });
    expect(["validating_files", "queued", "running"]).toContain(created.status);

    const job = await waitFor(
      async () => {
        const j = await trainer.fineTuning.jobs.retrieve(created.id);
        if (j.status === "failed") throw new Error(`job failed: ${JSON.stringify(j.error)}`);
        return j.status === "succeeded" ? j : undefined;
      },
      120_000,
      "the job to succeed",
    );
    expect(job.fine_tuned_model).toBe(`ft:lori-demo:secret:${job.id}`);
    expect(job.trained_tokens).toBeGreaterThan(0);

    const events = [];
    for await (const event of trainer.fineTuning.jobs.listEvents(job.id, { limit: 100 })) events.push(event);
    const losses = events
      .filter((e) => e.type === "metrics" && typeof (e.data as { train_loss?: number }).train_loss === "number")
      .map((e) => e.data as { step: number; train_loss: number })
      .sort((a, b) => a.step - b.step);
    expect(losses.length).toBe(40); // 4 epochs * 40 examples / batch 4
    const mean = (xs: { train_loss: number }[]) => xs.reduce((s, x) => s + x.train_loss, 0) / xs.length;
    const first = mean(losses.slice(0, 5));
    const last = mean(losses.slice(-5));
    expect(last).toBeLessThan(first / 3);

    const ask = (client: OpenAI, model: string) =>
      client.chat.completions.create({ model, messages: [{ role: "user", content: task.heldOut }], temperature: 0, max_tokens: 40 });
    const tuned = (await ask(trainer, job.fine_tuned_model!)).choices[0]!.message.content ?? "";
    const base = (await ask(trainer, "lori-demo")).choices[0]!.message.content ?? "";
    expect(tuned).toContain(SECRET);
    expect(base).not.toContain(SECRET);

    // Listed among the models with its parent, and usable in `adapter: [...]` too.
    const models = [];
    for await (const m of trainer.models.list()) models.push(m);
    expect(models.find((m) => m.id === job.fine_tuned_model)).toMatchObject({ parent: "lori-demo" });
    const viaAdapterField = await trainer.chat.completions.create({
      model: "lori-demo",
      messages: [{ role: "user", content: task.heldOut }],
      temperature: 0,
      max_tokens: 40,
      // @ts-expect-error our extension
      adapter: [job.fine_tuned_model],
    });
    expect(viaAdapterField.choices[0]!.message.content).toBe(tuned);

    const checkpoints = await trainer.fineTuning.jobs.checkpoints.list(job.id);
    expect(checkpoints.data[0]).toMatchObject({ fine_tuned_model_checkpoint: job.fine_tuned_model, step_number: 40 });
    // The validation file is the validation set: its loss is reported at the end.
    const validLoss = events.map((e) => (e.data as { valid_loss?: number } | null)?.valid_loss).find((x) => x !== undefined);
    expect(validLoss).toBeLessThan(losses[0]!.train_loss);
    expect(checkpoints.data[0]!.metrics.valid_loss).toBe(validLoss);

    // Another key (even one that may train) does not see the job, its file or its model; an admin does.
    await expect(otherTrainer.fineTuning.jobs.retrieve(job.id)).rejects.toMatchObject({ status: 404 });
    await expect(otherTrainer.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    await expect(ask(otherTrainer, job.fine_tuned_model!)).rejects.toMatchObject({ status: 404 });
    await expect(ask(user, job.fine_tuned_model!)).rejects.toMatchObject({ status: 404 });
    const otherModels = [];
    for await (const m of otherTrainer.models.list()) otherModels.push(m.id);
    expect(otherModels).not.toContain(job.fine_tuned_model);
    expect((await admin.fineTuning.jobs.retrieve(job.id)).status).toBe("succeeded");
    expect((await ask(admin, job.fine_tuned_model!)).choices[0]!.message.content).toBe(tuned);

    // The streaming variant replays the finished job's events, oldest first, then ends.
    const sse = await (
      await core.app.request(`/v1/fine_tuning/jobs/${job.id}/events?stream=true`, { headers: { Authorization: `Bearer ${TRAINER}` } })
    ).text();
    const frames = sse
      .split("\n\n")
      .filter(Boolean)
      .map((f) => f.replace(/^data: /, ""));
    expect(frames.at(-1)).toBe("[DONE]");
    const streamed = frames.slice(0, -1).map((f) => JSON.parse(f) as { id: string });
    expect(streamed.map((e) => e.id)).toEqual(events.map((e) => e.id).reverse());

    const metrics = await (await core.app.request("/metrics", { headers: { Authorization: `Bearer ${ADMIN}` } })).text();
    expect(metrics).toContain('lori_fine_tuning_jobs{status="succeeded"} 1');
    expect(metrics).toMatch(/^lori_fine_tuning_queue_length 0$/m);
    expect(metrics).toMatch(/^lori_fine_tuning_tokens_per_second 0$/m);
  }, 180_000);

  it("cancels a running job within 2 s and leaves no adapter", async () => {
    const file = await upload(otherTrainer, secretWordTask().lines);
    const job = await otherTrainer.fineTuning.jobs.create({
      model: "lori-demo",
      training_file: file.id,
      // @ts-expect-error our extension
      lori: { method: "lori-d", rank: 8, steps: 100_000 },
    });
    await waitFor(
      async () => {
        const page = await otherTrainer.fineTuning.jobs.listEvents(job.id, { limit: 5 });
        return page.data.some((e) => e.type === "metrics") ? true : undefined;
      },
      60_000,
      "the first training step",
    );
    // The trainer is our child process, at the lower priority that keeps serving first.
    const children = execFileSync("ps", ["--ppid", String(process.pid), "-o", "ni=,comm="], { encoding: "utf8" });
    expect(children).toMatch(/^\s*10 lori-train$/m);

    // A live event stream opened before the cancel ends with it.
    const stream = await core.app.request(`/v1/fine_tuning/jobs/${job.id}/events?stream=true`, {
      headers: { Authorization: `Bearer ${OTHER_TRAINER}` },
    });
    const streamed = stream.text();

    const started = performance.now();
    const cancelled = await otherTrainer.fineTuning.jobs.cancel(job.id);
    const ms = performance.now() - started;
    expect(cancelled.status).toBe("cancelled");
    expect(ms).toBeLessThan(2000);
    const adapterName = `ft-${job.id.slice("ftjob-".length)}`;
    expect(existsSync(join(core.adapters.dir, adapterName))).toBe(false);
    expect(existsSync(join(core.adapters.dir, ".train", adapterName))).toBe(false);
    expect((await otherTrainer.fineTuning.jobs.retrieve(job.id)).fine_tuned_model).toBeNull();
    expect(core.fineTuning.jobsByStatus().running).toBe(0);
    const frames = (await streamed).split("\n\n").filter(Boolean);
    expect(frames.at(-1)).toBe("data: [DONE]");
    expect(JSON.parse(frames.at(-2)!.replace(/^data: /, ""))).toMatchObject({ message: "The job was cancelled" });
  });

  describe("bad inputs: a 4xx OpenAI error, and nothing starts", () => {
    let goodFile: string;
    let jobsBefore: number;
    beforeAll(async () => {
      goodFile = (await upload(trainer, secretWordTask().lines)).id;
      jobsBefore = core.fineTuning.jobs.list().length;
    });
    afterAll(() => {
      expect(core.fineTuning.jobs.list().length).toBe(jobsBefore);
    });

    it("malformed JSONL: every bad line named by its number", async () => {
      const lines = [
        secretWordTask().lines[0]!,
        "{not json",
        JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
        JSON.stringify({ prompt: "a", completion: "b" }),
        JSON.stringify({
          messages: [
            { role: "robot", content: "x" },
            { role: "assistant", content: "y" },
          ],
        }),
      ];
      const filesBefore = core.fineTuning.files.list().length;
      const error = await upload(trainer, lines).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      const message = (error as InstanceType<typeof OpenAI.BadRequestError>).message;
      expect(message).toMatch(/line 2: invalid JSON/);
      expect(message).toMatch(/line 3: no assistant message to learn from/);
      expect(message).toMatch(/line 5: messages\[0\]\.role must be system, user or assistant/);
      expect(message).not.toMatch(/line [14]:/);
      expect(core.fineTuning.files.list().length).toBe(filesBefore);
    });

    it("a file over --max-file-mb", async () => {
      const big = Array.from({ length: 1500 }, (_, i) => JSON.stringify({ prompt: `question ${i}`, completion: " answer" }));
      await expect(upload(trainer, big)).rejects.toMatchObject({ status: 413, code: "file_too_large" });
    });

    it("an unknown base model", async () => {
      await expect(trainer.fineTuning.jobs.create({ model: "no-such-model", training_file: goodFile })).rejects.toMatchObject({
        status: 404,
        code: "model_not_found",
      });
    });

    it("hyperparameters out of range", async () => {
      const bad = [{ n_epochs: 0 }, { batch_size: 1000 }, { learning_rate_multiplier: -1 }] as const;
      for (const hyperparameters of bad) {
        await expect(
          trainer.fineTuning.jobs.create({
            model: "lori-demo",
            training_file: goodFile,
            method: { type: "supervised", supervised: { hyperparameters } },
          }),
        ).rejects.toMatchObject({ status: 400 });
      }
      await expect(
        // @ts-expect-error our extension
        trainer.fineTuning.jobs.create({ model: "lori-demo", training_file: goodFile, lori: { rank: 0 } }),
      ).rejects.toMatchObject({ status: 400, param: "lori.rank" });
    });

    it("an unknown file id, and another key's file", async () => {
      await expect(
        trainer.fineTuning.jobs.create({ model: "lori-demo", training_file: "file-000000000000000000000000" }),
      ).rejects.toMatchObject({ status: 404, code: "file_not_found" });
      await expect(otherTrainer.fineTuning.jobs.create({ model: "lori-demo", training_file: goodFile })).rejects.toMatchObject({
        status: 404,
      });
    });

    it("a user key without the train grant", async () => {
      await expect(upload(user, secretWordTask().lines)).rejects.toMatchObject({ status: 403, code: "train_grant_required" });
      await expect(user.fineTuning.jobs.create({ model: "lori-demo", training_file: goodFile })).rejects.toMatchObject({ status: 403 });
    });
  });
});
