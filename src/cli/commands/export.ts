import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { readGgufFile } from "../../gguf/gguf-reader.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, pathExists, readAdapterRef } from "../../lora/adapter-store.js";
import { baseFingerprintOfGguf } from "../../lora/base-fingerprint.js";
import { exportPeftDir } from "../../lora/export-peft.js";
import { compileGgufLora } from "../../lora/gguf-lora.js";
import { writeMergedModel } from "../../lora/merged-model.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";
import { floatDtype } from "./import.js";

const help = `Usage: lori-server export NAME --format gguf|peft|merged-gguf --out PATH [options]

Exports a stored adapter (NAME in the adapters dir, or a PATH to an adapter directory):
  gguf  a llama.cpp GGUF LoRA for --base (q/k rows permuted for rope, per-module scales folded into B,
        float32 adapter.lora.alpha), validated against the base before it is moved into place
  peft  a dense PEFT directory: A materialised, B dense, F32, PEFT tensor names, loadable by PEFT's
        PeftModel.from_pretrained; adapter_config.json keeps the adapter's 'lori' block (seed, variant,
        sparsity, lineage), so 'lori-server import' restores the seeded A and sparse B (PEFT 0.13+ ignores
        the block; --peft-fields-only leaves it out for older PEFT)
  merged-gguf  a full model: --base with W + scale * B A folded into every adapted weight (F32/F16 bases;
        quantized bases are refused), every other tensor copied as is; serve it like any GGUF model.
        For an adapter set, 'lori-server merge' the set into one adapter first, then export that
Outputs are written atomically; an existing --out is refused unless --force.

Options:
  --format gguf|peft|merged-gguf  output format (required)
  --out PATH           output file (gguf, merged-gguf) or directory (peft) (required)
  --base MODEL.gguf    base model, required for gguf and merged-gguf; the adapter's base fingerprint must match it
  --dtype f32|f16      gguf tensor type (default f32); peft is always f32, merged-gguf keeps the base's types
  --adapters-dir DIR   adapter store (default ./${DEFAULT_ADAPTERS_DIR})
  --force              replace an existing --out
  --peft-fields-only   peft: write PEFT's LoraConfig fields only (a re-import then stores A densely)
  -h, --help           this help
`;

export const exportCommand: CliCommand = {
  name: "export",
  summary: "Export a stored adapter as a GGUF LoRA (llama.cpp), a dense PEFT directory or a merged GGUF model",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      {
        format: { type: "string" },
        out: { type: "string" },
        base: { type: "string" },
        dtype: { type: "string" },
        "adapters-dir": { type: "string" },
        force: { type: "boolean" },
        "peft-fields-only": { type: "boolean" },
      },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const [ref, ...extra] = parsed.positionals;
    const v = parsed.values;
    if (ref === undefined) throw new CliError("missing NAME: use 'lori-server export NAME --format gguf|peft|merged-gguf --out PATH'");
    if (extra.length > 0) throw new CliError(`unexpected argument '${extra[0]}'`);
    if (v.format !== "gguf" && v.format !== "peft" && v.format !== "merged-gguf") {
      throw new CliError(
        v.format === undefined
          ? "--format gguf|peft|merged-gguf is required"
          : `--format must be gguf, peft or merged-gguf, got '${v.format}'`,
      );
    }
    if (!v.out) throw new CliError("--out PATH is required");
    if (v.format !== "peft" && !v.base) throw new CliError(`--base MODEL.gguf is required for --format ${v.format}`);
    if (v.format === "peft" && v.dtype !== undefined) throw new CliError("--dtype applies to --format gguf only (peft is f32)");
    if (v.format === "merged-gguf" && v.dtype !== undefined) {
      throw new CliError("--dtype applies to --format gguf only (merged-gguf keeps the base's tensor types)");
    }
    if (v.format !== "peft" && v["peft-fields-only"]) throw new CliError("--peft-fields-only applies to --format peft only");
    const dtype = floatDtype(v.dtype);
    const out = v.out;
    const force = v.force ?? false;
    try {
      if (!force && (await pathExists(out))) throw new CliError(`${out} already exists (use --force to replace it)`, 1);
      const { adapter } = await readAdapterRef(ref, v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR);
      if (v.format === "peft") {
        await exportPeftDir(out, adapter, { overwrite: force, lori: v["peft-fields-only"] !== true });
        process.stdout.write(`exported ${ref} as dense PEFT (f32, ${adapter.modules.length} modules) -> ${out}\n`);
        return 0;
      }
      const baseHeader = await readGgufFile(v.base!);
      const recorded = adapter.config.lori?.base_fingerprint;
      const actual = baseFingerprintOfGguf(baseHeader);
      if (recorded && recorded.sha256 !== actual.sha256) {
        throw new CliError(
          `adapter '${ref}' was made for another base (fingerprint ${recorded.architecture} ${recorded.sha256.slice(0, 12)}, ` +
            `${v.base} is ${actual.architecture} ${actual.sha256.slice(0, 12)})`,
          1,
        );
      }
      if (v.format === "merged-gguf") {
        const summary = await writeMergedModel(adapter, v.base!, baseHeader, out, { name: basename(ref) });
        process.stdout.write(
          `exported ${ref} as a merged GGUF model (${summary.mergedTensors} tensors merged, ${summary.bytes} bytes) -> ${out}\n`,
        );
        return 0;
      }
      // Compile beside --out, validate, then move into place: a failed validation leaves nothing behind.
      const temp = join(dirname(out), `.${basename(out)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
      try {
        const summary = await compileGgufLora(adapter, baseHeader, temp, { dtype, name: basename(ref) });
        await rename(temp, out);
        process.stdout.write(
          `exported ${ref} as GGUF LoRA (${dtype}, ${summary.ranks.size} tensor pairs, alpha ${summary.alpha}) -> ${out}\n`,
        );
      } finally {
        await rm(temp, { force: true });
      }
      return 0;
    } catch (error) {
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
  },
};
