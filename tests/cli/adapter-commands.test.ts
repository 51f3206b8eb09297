// The adapter CLI commands (import, export, merge, inspect) on real files: PEFT directories written as PEFT
// writes them, generated GGUF bases, and the adapters directory checked byte for byte after every failure.
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { CliError, type CliCommand } from "../../src/cli/command.js";
import { exportCommand } from "../../src/cli/commands/export.js";
import { importCommand } from "../../src/cli/commands/import.js";
import { inspectCommand } from "../../src/cli/commands/inspect.js";
import { mergeCommand } from "../../src/cli/commands/merge.js";
import { readGgufFile } from "../../src/gguf/gguf-reader.js";
import { writeGgufFile } from "../../src/gguf/gguf-writer.js";
import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { makeAdapter } from "../../src/lora/adapter.js";
import type { ModuleLayoutInput } from "../../src/lora/adapter-layout.js";
import { readAdapterDir, WEIGHTS_FILE, writeAdapterDir } from "../../src/lora/adapter-io.js";
import { baseFingerprintOfGguf } from "../../src/lora/base-fingerprint.js";
import { SafetensorsFile } from "../../src/lora/safetensors.js";
import { generateSeededA } from "../../src/lora/seeded-a.js";
import { adapterLayouts, layoutSizeReport } from "../../src/lora/size-report.js";
import { LLAMA3_8B_SHAPES, TARGET_MODULES } from "../../src/lora/target-modules.js";
import { createTinyModel } from "../../src/model/tiny-model.js";
import { useTempDir } from "../support/temp-dir.js";
import { rng, tinyModules } from "../lora/helpers.js";
import { moduleShapesOfGguf, randomPeftTensors, runCli, writePeftDir, type ModuleShape } from "../lora/peft-fixtures.js";

const COMMANDS: CliCommand[] = [importCommand, exportCommand, mergeCommand, inspectCommand];

async function ok(command: CliCommand, argv: string[]): Promise<string> {
  const result = await runCli(command, argv);
  if (result.error) throw result.error;
  expect(result.code).toBe(0);
  return result.stdout;
}

/** Every path under `dir` (hidden temp entries included) with its size: what "nothing written" compares. */
async function snapshot(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const out: string[] = [];
  for (const entry of entries.sort()) out.push(`${entry} ${(await stat(join(dir, entry))).size}`);
  return out;
}

/** All tensors of a safetensors file as raw bytes, by name. */
async function tensorBytes(path: string): Promise<Map<string, Buffer>> {
  const file = await SafetensorsFile.open(path);
  try {
    const out = new Map<string, Buffer>();
    for (const name of file.tensors.keys()) out.set(name, Buffer.from(await file.readBytes(name)));
    return out;
  } finally {
    await file.close();
  }
}

describe("adapter commands", () => {
  const tmp = useTempDir();
  let basePath: string;
  let header: GgufFile;
  let shapes: ModuleShape[];
  const adaptersDir = () => join(tmp.path, "adapters");
  const store = () => ["--adapters-dir", adaptersDir()];

  beforeAll(async () => {
    basePath = join(tmp.path, "base.gguf");
    await createTinyModel({ out: basePath, seed: 3 });
    header = await readGgufFile(basePath);
    shapes = moduleShapesOfGguf(header);
    await writePeftDir(join(tmp.path, "peft-plain"), { rank: 4, alpha: 8, tensors: randomPeftTensors(shapes, { rank: 4, seed: 1 }) });
    await ok(importCommand, [join(tmp.path, "peft-plain"), "--name", "plain", "--base", basePath, ...store()]);
  });

  it("every command prints its help with --help and exits 0", async () => {
    for (const command of COMMANDS) {
      const result = await runCli(command, ["--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Usage: lori-server ${command.name}`);
      expect(result.stdout).toContain("--adapters-dir DIR");
    }
  });

  it("import records the base fingerprint, the variant and an import lineage", async () => {
    const adapter = await readAdapterDir(join(adaptersDir(), "plain"));
    const lori = adapter.config.lori!;
    expect(lori.base_fingerprint?.sha256).toBe(baseFingerprintOfGguf(header).sha256);
    expect(lori.variant).toBe("lora");
    expect(lori.a_init).toBeNull();
    expect(lori.lineage.at(-1)).toMatchObject({ op: "import", source: "peft-plain", from: "peft" });
    expect(adapter.modules).toHaveLength(14);
    expect(adapter.config.base_model_name_or_path).toBe("test/random-llama");
  });

  it("PEFT fp32 -> import -> export peft is bit-exact, tensor by tensor, dense and LoRI-S alike", async () => {
    const lorisSource = join(tmp.path, "peft-loris");
    await writePeftDir(lorisSource, { rank: 8, alpha: 16, tensors: randomPeftTensors(shapes, { rank: 8, seed: 2, zeroFraction: 0.9 }) });
    const out = await ok(importCommand, [lorisSource, "--name", "loris", "--base", basePath, ...store()]);
    expect(out).toMatch(/lori-s.*mask from B != 0/);
    const stored = await readAdapterDir(join(adaptersDir(), "loris"));
    expect(stored.config.lori?.variant).toBe("lori-s");
    expect(stored.config.lori?.sparsity).toBeGreaterThan(0.85);
    expect(stored.modules.every((m) => m.mask)).toBe(true);
    expect([...(await tensorBytes(join(adaptersDir(), "loris", WEIGHTS_FILE))).keys()].some((n) => n.endsWith("lora_B.mask"))).toBe(true);

    for (const [name, source] of [
      ["plain", join(tmp.path, "peft-plain")],
      ["loris", lorisSource],
    ]) {
      const exported = join(tmp.path, `export-${name}`);
      await ok(exportCommand, [name!, "--format", "peft", "--out", exported, ...store()]);
      const before = await tensorBytes(join(source!, WEIGHTS_FILE));
      const after = await tensorBytes(join(exported, WEIGHTS_FILE));
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [tensor, bytes] of before) expect(after.get(tensor)!.equals(bytes), tensor).toBe(true);
      const config = JSON.parse(await readFile(join(exported, "adapter_config.json"), "utf8"));
      expect(config).toMatchObject({
        peft_type: "LORA",
        r: name === "plain" ? 4 : 8,
        lora_alpha: name === "plain" ? 8 : 16,
        use_dora: false,
        bias: "none",
      });
      // The lori block travels with the export (PEFT 0.13+ ignores it); --peft-fields-only leaves it out.
      expect(config.lori).toMatchObject({ variant: name === "plain" ? "lora" : "lori-s" });
      expect([...config.target_modules].sort()).toEqual([...TARGET_MODULES].sort());
      const strict = join(tmp.path, `export-${name}-strict`);
      await ok(exportCommand, [name!, "--format", "peft", "--out", strict, "--peft-fields-only", ...store()]);
      expect(JSON.parse(await readFile(join(strict, "adapter_config.json"), "utf8")).lori).toBeUndefined();
      expect((await tensorBytes(join(strict, WEIGHTS_FILE))).size).toBe(after.size);
    }
  });

  it("a stored A equal to the seeded A of the config's seed is recognised, and F16 import stores F16", async () => {
    const seed = 4242;
    const source = join(tmp.path, "peft-seeded");
    const tensors = randomPeftTensors(shapes, {
      rank: 4,
      seed: 5,
      fixedA: (s) => generateSeededA({ seed, layer: s.layer, module: s.module, rank: 4, inFeatures: s.inFeatures }),
    });
    const lori = {
      format_version: 1,
      variant: "lori-d",
      sparsity: 0,
      a_init: { prng: "philox4x32-10", seed, distribution: "kaiming-uniform" },
    };
    await writePeftDir(source, { rank: 4, alpha: 8, tensors, config: { lori } });
    await ok(importCommand, [source, "--name", "seeded", "--base", basePath, "--dtype", "f16", ...store()]);
    const adapter = await readAdapterDir(join(adaptersDir(), "seeded"));
    expect(adapter.modules.every((m) => m.a.kind === "seeded" && m.a.seed === seed)).toBe(true);
    expect(adapter.config.lori?.variant).toBe("lori-d");
    const file = await SafetensorsFile.open(join(adaptersDir(), "seeded", WEIGHTS_FILE));
    expect([...file.tensors.values()].every((t) => t.dtype === "F16" && t.name.endsWith("lora_B.weight"))).toBe(true);
    await file.close();
  });

  it("inspect reports ranks, sparsity, trainable params, seed, lineage and bytes vs dense fp16 PEFT", async () => {
    // LoRI-S: 90 % sparse B, seeded A, F16 values.
    const source = join(tmp.path, "ours-loris");
    await writeAdapterDir(source, makeAdapter(tinyModules({ seed: 99, sparsity: 0.9, random: rng(8) })));
    await ok(importCommand, [source, "--name", "loris16", "--base", basePath, "--dtype", "f16", ...store()]);
    const adapter = await readAdapterDir(join(adaptersDir(), "loris16"));
    const json = JSON.parse(await ok(inspectCommand, ["loris16", "--json", ...store()]));
    const size = (await stat(join(adaptersDir(), "loris16", WEIGHTS_FILE))).size;
    const layout = layoutSizeReport(adapterLayouts(adapter), "lori-s", "F16");
    expect(json).toMatchObject({
      variant: "lori-s",
      seed: 99,
      modules: 14,
      bytesOnDisk: size,
      denseFp16PeftBytes: layout.denseFp16PeftBytes,
    });
    expect(size).toBe(layout.fileBytes);
    expect(json.ratioToDenseFp16).toBeCloseTo(layout.ratioToDenseFp16, 12);
    expect(json.trainableParams).toBe(layout.trainableParams);
    expect(json.perModule[0]).toMatchObject({ layer: 0, module: "q_proj", rank: 4, a: "seeded" });
    expect(json.lineage.at(-1).op).toBe("import");
    const text = await ok(inspectCommand, [join(adaptersDir(), "loris16"), ...store()]); // by PATH too
    expect(text).toMatch(/bytes on disk [\d,]+ vs dense fp16 PEFT [\d,]+: ratio \d+\.\d %/);
    expect(text).toMatch(/seeded \(seed 99\)/);

    // The same layout code at Llama-3-8B shapes, r = 32, 90 % sparse: the ratio inspect would print.
    const layouts: ModuleLayoutInput[] = Array.from({ length: 32 }, (_, layer) =>
      TARGET_MODULES.map((module) => {
        const [outFeatures, inFeatures] = LLAMA3_8B_SHAPES[module];
        return { layer, module, rank: 32, inFeatures, outFeatures, aStored: false, sparseCount: Math.floor(0.1 * outFeatures * 32) };
      }),
    ).flat();
    const eightB = layoutSizeReport(layouts, "lori-s", "F16");
    expect(eightB.ratioToDenseFp16).toBeLessThanOrEqual(0.1);
  });

  it("inspect --pair reports mask overlap, principal angles and the cross-term ratio", async () => {
    const self = JSON.parse(await ok(inspectCommand, ["--pair", "plain", "plain", "--json", ...store()]));
    expect(self.maskOverlap).toBe(1);
    expect(self.principalAnglesDeg.max).toBeLessThan(1e-3);
    const pair = JSON.parse(await ok(inspectCommand, ["--pair", "loris", "loris16", "--json", ...store()]));
    expect(pair.sharedModules).toBe(14);
    expect(pair.principalAnglesDeg.min).toBeGreaterThan(0);
    expect(pair.principalAnglesDeg.mean).toBeGreaterThan(45);
    expect(pair.maskOverlap).toBeLessThan(0.2);
    expect(pair.crossTermRatio).toBeNull(); // ranks 8 and 4: no linear merge
    const text = await ok(inspectCommand, ["--pair", "plain", "seeded", ...store()]);
    expect(text).toMatch(/principal angles min \/ mean \/ max [\d.]+ \/ [\d.]+ \/ [\d.]+ deg/);
    expect(text).toMatch(/cross-term ratio \d\.\d{4}/);
  });

  it("merge writes lineage, refuses an existing name and bad weights", async () => {
    await ok(mergeCommand, ["--method", "cat", "--out", "m1", "plain:0.5", "seeded", ...store()]);
    const merged = await readAdapterDir(join(adaptersDir(), "m1"));
    expect(merged.config.lori?.lineage[0]).toMatchObject({
      op: "merge",
      method: "cat",
      inputs: [
        { name: "plain", weight: 0.5 },
        { name: "seeded", weight: 1 },
      ],
    });
    const before = await snapshot(adaptersDir());
    for (const argv of [
      ["--method", "cat", "--out", "m1", "plain", "seeded"],
      ["--method", "linear", "--out", "m2", "plain:0", "seeded"],
      ["--method", "linear", "--out", "m2", "plain", "loris"],
      ["--method", "cat", "--out", "m2", "plain:abc"],
      ["--method", "cat", "--out", "m2", "nope"],
      ["--method", "sum", "--out", "m2", "plain"],
      ["--method", "cat", "--out", "../m2", "plain"],
    ]) {
      const result = await runCli(mergeCommand, [...argv, ...store()]);
      expect(result.error, argv.join(" ")).toBeInstanceOf(CliError);
      expect(result.error!.message).not.toContain("\n");
    }
    expect(await snapshot(adaptersDir())).toEqual(before);
  });

  it("import, merge and export take --force to replace an existing output, and say so when refusing", async () => {
    const peft = join(tmp.path, "peft-force");
    await writePeftDir(peft, { rank: 4, alpha: 8, tensors: randomPeftTensors(shapes, { rank: 4, seed: 21 }) });
    await ok(importCommand, [peft, "--name", "forced", "--base", basePath, ...store()]);
    const first = await readFile(join(adaptersDir(), "forced", WEIGHTS_FILE));
    const refused = await runCli(importCommand, [peft, "--name", "forced", "--base", basePath, "--dtype", "f16", ...store()]);
    expect(refused.error?.message).toMatch(/already exists in .* \(use --force to replace it\)$/);
    await ok(importCommand, [peft, "--name", "forced", "--base", basePath, "--dtype", "f16", "--force", ...store()]);
    const replaced = await readFile(join(adaptersDir(), "forced", WEIGHTS_FILE));
    expect(replaced.length).toBeLessThan(first.length); // f16 now, f32 before

    await ok(mergeCommand, ["--method", "cat", "--out", "forced-merge", "plain", ...store()]);
    const refusedMerge = await runCli(mergeCommand, ["--method", "cat", "--out", "forced-merge", "plain:2", ...store()]);
    expect(refusedMerge.error?.message).toMatch(/\(use --force to replace it\)$/);
    await ok(mergeCommand, ["--method", "cat", "--out", "forced-merge", "plain:2", "--force", ...store()]);
    const merged = await readAdapterDir(join(adaptersDir(), "forced-merge"));
    expect(merged.config.lori?.lineage[0]).toMatchObject({ op: "merge", inputs: [{ name: "plain", weight: 2 }] });

    const out = join(tmp.path, "forced.gguf");
    await ok(exportCommand, ["plain", "--format", "gguf", "--base", basePath, "--out", out, ...store()]);
    expect(
      (await runCli(exportCommand, ["plain", "--format", "gguf", "--base", basePath, "--out", out, ...store()])).error?.message,
    ).toMatch(/use --force/);
    await ok(exportCommand, ["plain", "--format", "gguf", "--base", basePath, "--out", out, "--force", ...store()]);
  });

  it("export gguf validates against the base and refuses another base or an existing file", async () => {
    const out = join(tmp.path, "plain.gguf");
    await ok(exportCommand, ["plain", "--format", "gguf", "--base", basePath, "--out", out, ...store()]);
    const lora = await readGgufFile(out);
    expect(lora.metadata.get("adapter.lora.alpha")).toEqual({ type: "float32", value: 8 });
    const again = await runCli(exportCommand, ["plain", "--format", "gguf", "--base", basePath, "--out", out, ...store()]);
    expect(again.error?.message).toMatch(/already exists/);
    const otherBase = join(tmp.path, "other.gguf");
    await createTinyModel({ out: otherBase, seed: 3, vocab: 300 });
    const other = await runCli(exportCommand, [
      "plain",
      "--format",
      "gguf",
      "--base",
      otherBase,
      "--out",
      join(tmp.path, "x.gguf"),
      ...store(),
    ]);
    expect(other.error?.message).toMatch(/made for another base/);
    await expect(stat(join(tmp.path, "x.gguf"))).rejects.toThrow();
    expect(
      (await runCli(exportCommand, ["plain", "--format", "gguf", "--out", join(tmp.path, "y.gguf"), ...store()])).error?.message,
    ).toMatch(/--base/);
  });

  describe("bad imports: one clear line, nothing written", () => {
    const good = () => randomPeftTensors(shapes, { rank: 4, seed: 7 });

    async function expectRefused(argv: string[], pattern: RegExp): Promise<string> {
      const before = await snapshot(adaptersDir());
      const result = await runCli(importCommand, [...argv, ...store()]);
      expect(result.error, argv.join(" ")).toBeInstanceOf(CliError);
      expect(result.error!.message).not.toContain("\n");
      expect(result.error!.message).toMatch(pattern);
      expect(result.code).toBeNull();
      expect(await snapshot(adaptersDir())).toEqual(before);
      if (process.env.LORI_PRINT_ERRORS) console.log(result.error!.message);
      return result.error!.message;
    }

    it("refuses a truncated safetensors file", async () => {
      const dir = join(tmp.path, "bad-truncated");
      await writePeftDir(dir, { rank: 4, alpha: 8, tensors: good() });
      const bytes = await readFile(join(dir, WEIGHTS_FILE));
      await writeFile(join(dir, WEIGHTS_FILE), bytes.subarray(0, bytes.length - 100));
      await expectRefused([dir, "--name", "t", "--base", basePath], /unreferenced bytes|truncat|exceed/);
    });

    it("refuses a safetensors header that lies about a tensor's shape", async () => {
      const dir = join(tmp.path, "bad-header");
      await writePeftDir(dir, { rank: 4, alpha: 8, tensors: good() });
      const bytes = await readFile(join(dir, WEIGHTS_FILE));
      const length = Number(bytes.readBigUInt64LE(0));
      const json = bytes.subarray(8, 8 + length).toString("utf8");
      // Same header length (shape digits swapped in place), so only the claim changes.
      const lying = json.replace('"shape":[4,64]', '"shape":[4,46]');
      expect(lying).not.toBe(json);
      Buffer.from(lying, "utf8").copy(bytes, 8);
      await writeFile(join(dir, WEIGHTS_FILE), bytes);
      await expectRefused([dir, "--name", "h", "--base", basePath], /spans \d+ bytes but F32\[4,46\] needs/);
    });

    it("refuses NaN and Inf values, naming each module", async () => {
      const dir = join(tmp.path, "bad-nan");
      const tensors = good();
      tensors.get("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")![3] = Number.NaN;
      tensors.get("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight")![0] = Number.POSITIVE_INFINITY;
      await writePeftDir(dir, { rank: 4, alpha: 8, tensors });
      const message = await expectRefused([dir, "--name", "n", "--base", basePath], /NaN\/Inf/);
      expect(message).toMatch(/layer 0 v_proj: lora_B has 1 NaN\/Inf.*layer 1 up_proj: lora_B has 1 NaN\/Inf/);
    });

    it("refuses shapes that do not fit the base, listing each mismatch", async () => {
      const other = join(tmp.path, "wide.gguf");
      await createTinyModel({ out: other, embd: 32, heads: 4, kvHeads: 2, ff: 96 });
      const dir = join(tmp.path, "bad-shapes");
      await writePeftDir(dir, {
        rank: 4,
        alpha: 8,
        tensors: randomPeftTensors(moduleShapesOfGguf(await readGgufFile(other)), { rank: 4, seed: 9 }),
      });
      const message = await expectRefused(
        [dir, "--name", "s", "--base", basePath],
        /layer 0 q_proj: adapter is \[out 32, in 32\] but base blk\.0\.attn_q\.weight is ne \[64,64\]/,
      );
      expect(message).toMatch(/layer 1 down_proj/);
      expect(message.split("; ").length).toBe(14);
    });

    it("refuses a base whose architecture is not llama", async () => {
      const gpt2 = join(tmp.path, "gpt2.gguf");
      await writeGgufFile(gpt2, {
        metadata: [["general.architecture", { type: "string", value: "gpt2" }]],
        tensors: header.tensors.map((t) => ({
          name: t.name,
          type: "F32",
          shape: t.shape,
          data: new Float32Array(t.shape.reduce((n, d) => n * d, 1)),
        })),
      });
      await expectRefused([join(tmp.path, "peft-plain"), "--name", "g", "--base", gpt2], /architecture is 'gpt2'/);
    });

    it("refuses names that could escape the adapters dir", async () => {
      for (const name of ["../x", "a/b", ".hidden", "x..y", ""]) {
        await expectRefused([join(tmp.path, "peft-plain"), "--name", name, "--base", basePath], /adapter name|--name/);
      }
      await expectRefused([join(tmp.path, "peft-plain"), "--name", "plain", "--base", basePath], /already exists/);
    });

    // A DoRA adapter imports (tests/lora/dora-adapter.test.ts) when every module has its magnitude; this one has one.
    it("refuses a DoRA adapter without a magnitude per module, and unknown target modules", async () => {
      const dora = join(tmp.path, "bad-dora");
      const tensors = good();
      tensors.set("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", new Float32Array(64));
      await writePeftDir(dora, { rank: 4, alpha: 8, tensors, config: { use_dora: true } });
      await expectRefused([dora, "--name", "d", "--base", basePath], /no lora_magnitude_vector .*DoRA adapter needs one per module/);
      const unknown = join(tmp.path, "bad-targets");
      const withHead = good();
      withHead.set("base_model.model.lm_head.lora_A.weight", new Float32Array(4 * 64));
      await writePeftDir(unknown, { rank: 4, alpha: 8, tensors: withHead, config: { target_modules: ["q_proj", "lm_head"] } });
      await expectRefused(
        [unknown, "--name", "u", "--base", basePath],
        /target module 'lm_head' is not supported.*unsupported tensor 'base_model\.model\.lm_head\.lora_A\.weight'/,
      );
    });

    it("refuses a missing directory or base model", async () => {
      await expectRefused([join(tmp.path, "nowhere"), "--name", "x", "--base", basePath], /adapter_config\.json/);
      await expectRefused([join(tmp.path, "peft-plain"), "--name", "x", "--base", join(tmp.path, "nope.gguf")], /nope\.gguf/);
      await expectRefused([join(tmp.path, "peft-plain"), "--name", "x"], /--base/);
    });
  });
});
