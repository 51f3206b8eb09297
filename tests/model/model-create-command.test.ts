import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { modelCreateCommand } from "../../src/cli/commands/model-create.js";
import { CliError } from "../../src/cli/command.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";

describe("lori-server model create", () => {
  const dir = useTempDir();
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const quietly = () => vi.spyOn(process.stdout, "write").mockImplementation(() => true);

  it("writes the model the options describe, identical to createTinyModel's", async () => {
    const out = join(dir.path, "cli.gguf");
    const stdout = quietly();
    const code = await modelCreateCommand.run([
      "create",
      "--out",
      out,
      "--layers",
      "1",
      "--embd",
      "32",
      "--heads",
      "4",
      "--kv-heads",
      "2",
      "--ff",
      "40",
      "--vocab",
      "270",
      "--seed",
      "9",
      "--dtype",
      "f16",
    ]);
    expect(code).toBe(0);
    expect(String(stdout.mock.calls[0]?.[0])).toMatch(/^wrote .*cli\.gguf: llama, 1 layers, d=32/);
    const reference = join(dir.path, "lib.gguf");
    await createTinyModel({ out: reference, layers: 1, embd: 32, heads: 4, kvHeads: 2, ff: 40, vocab: 270, seed: 9, dtype: "f16" });
    expect((await readFile(out)).equals(await readFile(reference))).toBe(true);
  });

  it("starts from the bench shape with --bench-shape, letting flags override it", async () => {
    const out = join(dir.path, "bench-ish.gguf");
    quietly();
    await modelCreateCommand.run(["create", "--bench-shape", "--layers", "1", "--out", out]);
    const { metadata, tensors } = await readGgufFile(out);
    expect(metadata.get("llama.block_count")?.value).toBe(1);
    expect(metadata.get("llama.embedding_length")?.value).toBe(512);
    expect(metadata.get("llama.feed_forward_length")?.value).toBe(1408);
    expect(tensors.find((t) => t.name === "blk.0.attn_q.weight")?.type).toBe("F16");
  });

  it("prints help for --help", async () => {
    const stdout = quietly();
    expect(await modelCreateCommand.run(["create", "--help"])).toBe(0);
    expect(String(stdout.mock.calls[0]?.[0])).toMatch(/^Usage: lori-server model create/);
  });

  it("refuses bad arguments with one-line CliErrors", async () => {
    const out = join(dir.path, "never.gguf");
    const cases: Array<[string[], RegExp]> = [
      [[], /missing subcommand/],
      [["list"], /unknown model subcommand 'list'/],
      [["create", "extra", "--out", out], /unexpected argument 'extra'/],
      [["create"], /--out FILE.gguf is required/],
      [["create", "--out", out, "--layers", "0"], /--layers must be a positive integer, got '0'/],
      [["create", "--out", out, "--embd", "1.5"], /--embd must be a positive integer/],
      [["create", "--out", out, "--heads", "3"], /divisible by the head count 3/],
      [["create", "--out", out, "--kv-heads", "3"], /divisible by the kv head count 3/],
      [["create", "--out", out, "--vocab", "100"], /--vocab must be at least 260/],
      [["create", "--out", out, "--seed", "-1"], /--seed/],
      [["create", "--out", out, "--seed", "4294967296"], /--seed must be an integer from 0 to 4294967295/],
      [["create", "--out", out, "--dtype", "q4_k"], /--dtype must be f32, f16 or q8_0, got 'q4_k'/],
      [["create", "--out", out, "--bogus"], /bogus/],
    ];
    for (const [argv, message] of cases) {
      const error = await modelCreateCommand.run(argv).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, argv.join(" ")).toBeInstanceOf(CliError);
      expect((error as Error).message, argv.join(" ")).toMatch(message);
      expect((error as Error).message).not.toContain("\n");
    }
  });
});
