import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { toFile } from "openai";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer, demoModelPath } from "../support/in-process.js";
import { ensureTrainerBuilt } from "../native/helpers.js";
import { clientFor, secretWordTask, waitFor } from "./helpers.js";

/** A server core over fixed data and adapters dirs, so a second core sees what the first left. */
function openCore(dirs: { data: string; adapters: string }, maxTrainingJobs = 1): Promise<ServerCore> {
  return createInProcessServer({ dataDir: dirs.data, trainingThreads: 1, maxTrainingJobs }, { adaptersDir: dirs.adapters });
}

function freshDirs() {
  return { data: mkdtempSync(join(tmpdir(), "lori-ft-data-")), adapters: mkdtempSync(join(tmpdir(), "lori-ft-adapters-")) };
}

const JOB = { model: "lori-demo", seed: 11, lori: { method: "lori-d", rank: 8, steps: 60 } };

async function startJob(core: ServerCore): Promise<string> {
  const client = clientFor(core);
  const file = await client.files.create({
    file: await toFile(Buffer.from(secretWordTask().lines.join("\n")), "train.jsonl"),
    purpose: "fine-tune",
  });
  // `lori` is our extension, unknown to the client's types.
  const job = await client.fineTuning.jobs.create({ ...JOB, training_file: file.id } as Parameters<
    typeof client.fineTuning.jobs.create
  >[0]);
  return job.id;
}

function succeeded(core: ServerCore, id: string) {
  return waitFor(
    async () => {
      const job = core.fineTuning.jobs.get(id)!;
      if (job.status === "failed") throw new Error(`job failed: ${JSON.stringify(job.error)}`);
      return job.status === "succeeded" ? job : undefined;
    },
    120_000,
    "the job to succeed",
  );
}

describe("fine-tuning jobs across a server restart", () => {
  const open: ServerCore[] = [];
  /** The same job, never interrupted. */
  let reference: Buffer;
  beforeAll(async () => {
    ensureTrainerBuilt();
    const refDirs = freshDirs();
    const ref = await openCore(refDirs);
    try {
      const refJob = await succeeded(ref, await startJob(ref));
      reference = await readFile(join(refDirs.adapters, refJob.adapter, "adapter_model.safetensors"));
    } finally {
      await ref.dispose();
    }
  }, 240_000);
  afterEach(async () => {
    for (const core of open.splice(0)) await core.dispose();
  });

  it("a queued job stays queued; a running job resumes from its checkpoint and ends bit-identical to an uninterrupted run", async () => {
    // No training slots: the job waits queued, and still does after a restart.
    const dirs = freshDirs();
    const first = await openCore(dirs, 0);
    open.push(first);
    const id = await startJob(first);
    await waitFor(async () => (first.fineTuning.jobs.get(id)!.status === "queued" ? true : undefined), 10_000, "queued");
    await first.dispose();
    const second = await openCore(dirs, 0);
    open.push(second);
    expect(second.fineTuning.jobs.get(id)!.status).toBe("queued");
    expect(second.fineTuning.queueLength()).toBe(1);
    await second.dispose();

    // With a slot it starts; stopped mid-run (a shutdown: the trainer checkpoints), it stays `running` on disk.
    const third = await openCore(dirs);
    open.push(third);
    await waitFor(
      async () => (third.fineTuning.jobs.eventsOf(id).some((e) => (e.data as { step?: number } | null)?.step === 10) ? true : undefined),
      60_000,
      "step 10",
    );
    await third.dispose();
    expect(third.fineTuning.jobs.get(id)!.status).toBe("running");

    const fourth = await openCore(dirs);
    open.push(fourth);
    const job = await succeeded(fourth, id);
    const resumedEvent = fourth.fineTuning.jobs.eventsOf(id).find((e) => e.message === "Fine-tuning job resumed");
    expect(resumedEvent).toBeDefined();
    const start = fourth.fineTuning.jobs
      .eventsOf(id)
      .filter((e) => e.message.startsWith("Training train phase"))
      .at(-1);
    expect((start!.data as { start_step: number }).start_step).toBeGreaterThanOrEqual(10);
    const resumed = await readFile(join(dirs.adapters, job.adapter, "adapter_model.safetensors"));
    expect(resumed.equals(reference)).toBe(true);
  }, 240_000);

  it("kill -9 of the server mid-job: the restarted server resumes the job, and the adapter is bit-identical", async () => {
    const dirs = freshDirs();
    const args = [
      cli,
      "serve",
      "--port",
      "0",
      "--model",
      `lori-demo=${demoModelPath}`,
      "--gpu",
      "off",
      "--threads",
      "1",
      "--context-size",
      "256",
      "--quiet",
    ];
    args.push("--data-dir", dirs.data, "--adapters-dir", dirs.adapters, "--training-threads", "1", "--adapters-poll-ms", "0");
    const first = await startCli(args);
    let id: string;
    try {
      const client = new OpenAI({ apiKey: "unused", baseURL: `${first.url}/v1`, maxRetries: 0 });
      const file = await client.files.create({
        file: await toFile(Buffer.from(secretWordTask().lines.join("\n")), "train.jsonl"),
        purpose: "fine-tune",
      });
      id = (await client.fineTuning.jobs.create({ ...JOB, training_file: file.id } as Parameters<typeof client.fineTuning.jobs.create>[0]))
        .id;
      // Past the periodic checkpoint at step 20 (CHECKPOINT_EVERY_STEPS), then killed.
      await waitFor(
        async () =>
          (await client.fineTuning.jobs.listEvents(id, { limit: 5 })).data.some((e) => e.message === "Checkpoint at step 20")
            ? true
            : undefined,
        60_000,
        "the checkpoint at step 20",
      );
    } finally {
      first.child.kill("SIGKILL");
      await once(first.child, "exit");
    }

    const second = await startCli(args);
    try {
      const client = new OpenAI({ apiKey: "unused", baseURL: `${second.url}/v1`, maxRetries: 0 });
      const job = await waitFor(
        async () => {
          const j = await client.fineTuning.jobs.retrieve(id);
          if (j.status === "failed") throw new Error(`job failed: ${JSON.stringify(j.error)}`);
          return j.status === "succeeded" ? j : undefined;
        },
        120_000,
        "the resumed job to succeed",
      );
      const messages = (await client.fineTuning.jobs.listEvents(id, { limit: 100 })).data.map((e) => e.message);
      expect(messages).toContain("Fine-tuning job resumed");
      // The resumed trainer started from the last periodic checkpoint (events are newest first).
      expect(messages.find((m) => m.startsWith("Training train phase"))).toBeDefined();
      const starts = (await client.fineTuning.jobs.listEvents(id, { limit: 100 })).data.filter((e) =>
        e.message.startsWith("Training train phase"),
      );
      expect((starts[0]!.data as { start_step: number }).start_step).toBeGreaterThanOrEqual(20);
      const adapter = `ft-${id.slice("ftjob-".length)}`;
      const resumed = await readFile(join(dirs.adapters, adapter, "adapter_model.safetensors"));
      expect(resumed.equals(reference)).toBe(true);
      expect(job.fine_tuned_model).toBe(`ft:lori-demo::${id}`);
    } finally {
      second.child.kill("SIGTERM");
      await once(second.child, "exit");
    }
  }, 240_000);
});

const cli = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** `lori-server serve ...` as a child process; resolves with the URL it prints. */
async function startCli(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  const url = await new Promise<string>((resolve, reject) => {
    let seen = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      seen += String(chunk);
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once("exit", () => reject(new Error(`server exited before listening:\n${seen}`)));
  });
  return { child, url };
}
