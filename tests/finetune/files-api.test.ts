import { mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type OpenAI from "openai";
import { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerCore } from "../../src/server/start-server.js";
import { createInProcessServer } from "../support/in-process.js";
import { clientFor, secretWordTask } from "./helpers.js";

/** The Files API through the openai client and raw requests: shapes, listing, content, deletion, bad uploads. */
describe("files API", () => {
  let core: ServerCore;
  let client: OpenAI;
  let dataDir: string;
  const text = `${secretWordTask().lines.join("\n")}\n`;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "lori-ft-files-"));
    core = await createInProcessServer({ maxTrainingJobs: 0, dataDir }, { withDemoAdapters: false });
    client = clientFor(core);
  });
  afterAll(async () => {
    await core?.dispose();
  });

  it("stores, lists, returns and deletes a file with OpenAI's shapes", async () => {
    const file = await client.files.create({ file: await toFile(Buffer.from(text), "dir/../train.jsonl"), purpose: "fine-tune" });
    expect(file).toMatchObject({
      object: "file",
      bytes: Buffer.byteLength(text),
      filename: "train.jsonl",
      purpose: "fine-tune",
      status: "processed",
    });
    expect(file.id).toMatch(/^file-[0-9a-f]{24}$/);
    const other = await client.files.create({ file: await toFile(Buffer.from("anything"), "notes.txt"), purpose: "user_data" });

    const listed = [];
    for await (const f of client.files.list()) listed.push(f.id);
    expect(listed).toEqual([other.id, file.id]);
    const fineTune = [];
    for await (const f of client.files.list({ purpose: "fine-tune" })) fineTune.push(f.id);
    expect(fineTune).toEqual([file.id]);

    expect(await client.files.retrieve(file.id)).toEqual(file);
    expect(await (await client.files.content(file.id)).text()).toBe(text);

    expect(await client.files.delete(other.id)).toEqual({ id: other.id, object: "file", deleted: true });
    await expect(client.files.retrieve(other.id)).rejects.toMatchObject({ status: 404, code: "file_not_found" });
    const stored = await readdir(join(dataDir, "files"));
    expect(stored.sort()).toEqual([`${file.id}.data`, `${file.id}.json`].sort());
  });

  it("a job on a non-fine-tune file is a 400; the job then stays queued without training slots", async () => {
    const notes = await client.files.create({ file: await toFile(Buffer.from("x"), "n.txt"), purpose: "user_data" });
    await expect(client.fineTuning.jobs.create({ model: "lori-demo", training_file: notes.id })).rejects.toMatchObject({
      status: 400,
      code: "invalid_file_purpose",
    });
    const file = await client.files.create({ file: await toFile(Buffer.from(text), "t.jsonl"), purpose: "fine-tune" });
    const job = await client.fineTuning.jobs.create({ model: "lori-demo", training_file: file.id, suffix: "x" });
    const page = await client.fineTuning.jobs.list({ limit: 10 });
    expect(page.data.map((j) => j.id)).toContain(job.id);
    for (let i = 0; i < 50 && (await client.fineTuning.jobs.retrieve(job.id)).status !== "queued"; i++)
      await new Promise((r) => setTimeout(r, 50));
    const queued = await client.fineTuning.jobs.retrieve(job.id);
    expect(queued.status).toBe("queued");
    expect(queued.hyperparameters).toEqual({ n_epochs: 10, batch_size: 8, learning_rate_multiplier: 1 });
    const cancelled = await client.fineTuning.jobs.cancel(job.id);
    expect(cancelled.status).toBe("cancelled");
    await expect(client.fineTuning.jobs.cancel(job.id)).rejects.toMatchObject({ status: 400, code: "job_not_cancellable" });
    await expect(client.fineTuning.jobs.retrieve("ftjob-000000000000000000000000")).rejects.toMatchObject({ status: 404 });
  });

  it("rejects uploads that are not multipart, lack a field, or are not UTF-8 JSONL", async () => {
    const post = async (body: string | FormData, headers: Record<string, string> = {}) => {
      const response = await core.app.request("/v1/files", { method: "POST", body, headers });
      return { status: response.status, error: ((await response.json()) as { error: { message: string; param: string | null } }).error };
    };
    expect((await post(JSON.stringify({ purpose: "fine-tune" }), { "Content-Type": "application/json" })).status).toBe(400);
    const noPurpose = new FormData();
    noPurpose.set("file", new Blob([text]), "t.jsonl");
    expect(await post(noPurpose)).toMatchObject({ status: 400, error: { param: "purpose" } });
    const noFile = new FormData();
    noFile.set("purpose", "fine-tune");
    expect(await post(noFile)).toMatchObject({ status: 400, error: { param: "file" } });
    const binary = new FormData();
    binary.set("purpose", "fine-tune");
    binary.set("file", new Blob([new Uint8Array([0xff, 0xfe, 0x00])]), "t.jsonl");
    expect(await post(binary)).toMatchObject({ status: 400, error: { message: "The file is not valid UTF-8 text." } });
    const empty = new FormData();
    empty.set("purpose", "fine-tune");
    empty.set("file", new Blob(["\n\n"]), "t.jsonl");
    expect(await post(empty)).toMatchObject({ status: 400, error: { message: "Invalid training file: it has no training records." } });
  });
});
