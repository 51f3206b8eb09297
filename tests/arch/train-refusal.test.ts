import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { trainCommand } from "../../src/cli/commands/train.js";
import { createArchModel } from "../../src/model/arch-tiny-model.js";
import { runCommand } from "../support/run-command.js";
import { useTempDir } from "../support/temp-dir.js";

// Training builds the llama, qwen2 and qwen3 graphs (native/); Gemma and Phi-3 are served, imported and merged.
// `train` must say so in one line, before any work, naming what it supports.
describe("train on a base the trainer does not build", () => {
  const dir = useTempDir();

  it.each(["gemma2", "gemma3", "phi3"] as const)("refuses %s in one line naming the supported architectures", async (arch) => {
    const model = join(dir.path, `${arch}.gguf`);
    const data = join(dir.path, "data.jsonl");
    await createArchModel({ out: model, architecture: arch, layers: 1 });
    await writeFile(data, `${JSON.stringify({ prompt: "Q: hi?\nA:", completion: " hello." })}\n`);
    const adapters = join(dir.path, "adapters");
    const error = await runCommand(trainCommand, [
      "--base",
      model,
      "--data",
      data,
      "--out",
      "x",
      "--adapters-dir",
      adapters,
      "--gpu",
      "off",
    ]).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toBe(
      `the base architecture is '${arch}'; training supports llama (Llama 2/3, Mistral), qwen2 (Qwen2/2.5), qwen3 (Qwen3) only; ${arch} adapters can be imported, merged and served, not trained`,
    );
    expect(await readdir(adapters).catch(() => [])).toEqual([]);
  });
});
