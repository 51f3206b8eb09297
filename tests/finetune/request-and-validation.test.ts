import { describe, expect, it } from "vitest";
import { adapterNameForJob, fineTunedModelId, jobIdOfModelId } from "../../src/fine-tuning/ids.js";
import { createJobRequestSchema, JobRequestError, resolveTraining } from "../../src/fine-tuning/job-request.js";
import { checkTrainingJsonl } from "../../src/fine-tuning/validate-jsonl.js";
import { paginate } from "../../src/fine-tuning/views.js";

const chat = (messages: object[]) => JSON.stringify({ messages });

describe("training file validation", () => {
  it("accepts chat (with weight 0 turns), prompt/completion and text lines; blank lines are skipped", () => {
    const text = [
      chat([
        { role: "user", content: "hi" },
        { role: "assistant", content: "not this", weight: 0 },
        { role: "user", content: "again" },
        { role: "assistant", content: "this" },
      ]),
      "",
      JSON.stringify({ prompt: "2+2=", completion: "4" }),
      JSON.stringify({ text: "Once upon a time." }),
    ].join("\n");
    expect(checkTrainingJsonl(text)).toEqual({ records: 3, problems: [], moreProblems: false });
  });

  it("names every bad line with its number (CRLF too), and caps the list", () => {
    const text = [
      "{",
      chat([
        { role: "user", content: "x" },
        { role: "assistant", content: "y", weight: 0 },
      ]),
      JSON.stringify({ foo: 1 }),
      JSON.stringify([1]),
    ].join("\r\n");
    const check = checkTrainingJsonl(text);
    expect(check.problems.map((p) => p.line)).toEqual([1, 2, 3, 4]);
    expect(check.problems[1]!.problem).toBe("no assistant message to learn from");
    expect(check.problems[2]!.problem).toMatch(/^unknown record format/);
    expect(check.problems[3]!.problem).toBe("expected a JSON object");
    const many = checkTrainingJsonl(Array.from({ length: 30 }, () => "nope").join("\n"), 20);
    expect(many.problems).toHaveLength(20);
    expect(many.moreProblems).toBe(true);
  });
});

describe("job request resolution", () => {
  const parse = (body: object) => createJobRequestSchema.parse({ model: "m", training_file: "file-x", ...body });

  it("resolves auto from the record count and per-method defaults", () => {
    const t = resolveTraining(
      parse({ method: { type: "supervised", supervised: { hyperparameters: { n_epochs: "auto", batch_size: "auto" } } } }),
      40,
      5,
    );
    expect(t.hyperparameters).toEqual({ n_epochs: 10, batch_size: 8, learning_rate_multiplier: 1 });
    expect(t).toMatchObject({
      method: "lori-d",
      rank: 32,
      alpha: 64,
      learningRate: 3e-3,
      sparsity: null,
      calibrate: false,
      seed: 5,
      steps: null,
    });
    const s = resolveTraining(parse({ hyperparameters: { learning_rate_multiplier: 0.5 }, lori: { method: "lori-s", rank: 4 } }), 1000, 1);
    expect(s).toMatchObject({
      method: "lori-s",
      rank: 4,
      alpha: 8,
      sparsity: 0.9,
      calibrate: true,
      learningRate: 5e-3,
      calibrateLearningRate: 3e-3,
    });
    expect(s.hyperparameters).toEqual({ n_epochs: 1, batch_size: 8, learning_rate_multiplier: 0.5 });
  });

  it("rejects out-of-range fields and contradictions", () => {
    for (const body of [
      { hyperparameters: { n_epochs: 0 } },
      { hyperparameters: { batch_size: 1.5 } },
      { hyperparameters: { learning_rate_multiplier: 0 } },
      { hyperparameters: { nope: 1 } },
      { method: { type: "dpo" } },
      { lori: { sparsity: 1 } },
      { lori: { method: "qlora" } },
      { suffix: "has space" },
      { seed: -1 },
    ]) {
      expect(createJobRequestSchema.safeParse({ model: "m", training_file: "f", ...body }).success, JSON.stringify(body)).toBe(false);
    }
    const both = parse({
      hyperparameters: { n_epochs: 1 },
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
    });
    expect(() => resolveTraining(both, 10, 1)).toThrow(JobRequestError);
    expect(() => resolveTraining(parse({ lori: { method: "lori-d", sparsity: 0.5 } }), 10, 1)).toThrow(/lori-s only/);
    expect(() => resolveTraining(parse({ hyperparameters: { n_epochs: 2 }, lori: { steps: 5 } }), 10, 1)).toThrow(/not both/);
    expect(() =>
      resolveTraining(parse({ hyperparameters: { learning_rate_multiplier: 100 }, lori: { learning_rate: 0.5 } }), 10, 1),
    ).toThrow(/at most 1/);
  });
});

describe("fine-tuned model names", () => {
  it("maps ft:<base>:<suffix>:<job> to a valid adapter name and back to the job", () => {
    const job = "ftjob-0123456789abcdef01234567";
    const id = fineTunedModelId("lori-demo", "secret", job);
    expect(id).toBe("ft:lori-demo:secret:ftjob-0123456789abcdef01234567");
    expect(jobIdOfModelId(id)).toBe(job);
    expect(jobIdOfModelId(fineTunedModelId("a:b", null, job))).toBe(job);
    expect(jobIdOfModelId("lori-demo")).toBeUndefined();
    expect(jobIdOfModelId("ft:x:y:ftjob-nothex")).toBeUndefined();
    expect(adapterNameForJob(job)).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
  });
});

describe("pagination", () => {
  const items = ["e", "d", "c", "b", "a"].map((id) => ({ id }));
  it("pages newest-first lists by the last id seen", () => {
    expect(paginate(items, undefined, 2)).toEqual({ data: [{ id: "e" }, { id: "d" }], has_more: true });
    expect(paginate(items, "d", 2)).toEqual({ data: [{ id: "c" }, { id: "b" }], has_more: true });
    expect(paginate(items, "b", 2)).toEqual({ data: [{ id: "a" }], has_more: false });
    expect(paginate(items, "zz", 2)).toEqual({ data: [], has_more: false });
  });
});
