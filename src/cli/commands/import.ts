import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readGgufFile } from "../../gguf/gguf-reader.js";
import { WEIGHTS_FILE, writeAdapterDir } from "../../lora/adapter-io.js";
import { loriVariantSchema, type LoriVariant } from "../../lora/adapter-config.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, pathExists, storedAdapterDir } from "../../lora/adapter-store.js";
import { importGgufLora } from "../../lora/gguf-lora-import.js";
import { importAdapterDir } from "../../lora/peft-import.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server import PATH --name NAME --base MODEL.gguf [options]
       lori-server import FILE.gguf --name NAME --base MODEL.gguf [options]

Imports an adapter directory (adapter_config.json + adapter_model.safetensors): a PEFT LoRA, a published
LoRI-D / LoRI-S adapter (F32, F16 or BF16), or one of ours, for a GGUF base of architecture llama (Llama,
Mistral), qwen2, qwen3, gemma2, gemma3 or phi3 (whose adapters target the fused qkv_proj / gate_up_proj, not
q/k/v_proj or gate/up_proj). Every module is checked against the base (tensor present, shape [in, out] as in the GGUF); DoRA, unknown target modules,
another architecture, NaN/Inf values and shapes that do not fit are refused with one message listing each
problem, and nothing is written. A B that is mostly zeros (a LoRI-S adapter) gets its mask from B != 0 and is
stored sparse; a stored A equal to the seeded A of the config's lori.a_init seed is stored as the seed.
The result is written atomically to <adapters-dir>/NAME with the base's fingerprint and an import lineage.

A PATH ending in .gguf is a GGUF LoRA (llama.cpp's convert_lora_to_gguf.py, or our export --format gguf):
general.type adapter, adapter.type lora, adapter.lora.alpha, and <base tensor>.lora_a / .lora_b pairs in F32,
F16, BF16 or Q8_0 for the projections of the base's architecture. Models, other adapter types, activated
LoRAs (aLoRA invocation tokens), a missing alpha, another architecture and pairs that do not fit the base are
refused. q/k rows are permuted back to HF order where the architecture permutes them (llama).

Options:
  --name NAME              adapter name (required): 1-64 of [A-Za-z0-9._-], no leading '.', no '..'
  --base MODEL.gguf        the base model the adapter is for (required)
  --adapters-dir DIR       adapter store (default ./${DEFAULT_ADAPTERS_DIR})
  --dtype f32|f16          dtype of stored A / B / B values (default f32: lossless)
  --variant lora|lori-d|lori-s|dora
                           record this variant instead of detecting it (lori-s masks B != 0)
  --force                  replace an existing adapter NAME
  -h, --help               this help
`;

export const importCommand: CliCommand = {
  name: "import",
  summary: "Import a PEFT LoRA / LoRI adapter directory for a base model into the adapters dir",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      {
        name: { type: "string" },
        base: { type: "string" },
        "adapters-dir": { type: "string" },
        dtype: { type: "string" },
        variant: { type: "string" },
        force: { type: "boolean" },
      },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const [source, ...extra] = parsed.positionals;
    const v = parsed.values;
    if (source === undefined) throw new CliError("missing PATH: use 'lori-server import PATH --name NAME --base MODEL.gguf'");
    if (extra.length > 0) throw new CliError(`unexpected argument '${extra[0]}'`);
    if (!v.name) throw new CliError("--name NAME is required");
    if (!v.base) throw new CliError("--base MODEL.gguf is required");
    const dtype = floatDtype(v.dtype);
    const variant = v.variant === undefined ? undefined : variantOption(v.variant);
    const adaptersDir = v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR;
    try {
      const target = storedAdapterDir(adaptersDir, v.name);
      const force = v.force ?? false;
      if (!force && (await pathExists(target))) {
        throw new CliError(`adapter '${v.name}' already exists in ${adaptersDir} (use --force to replace it)`, 1);
      }
      const kind = await sourceKind(source);
      const baseHeader = await readGgufFile(v.base);
      const options = variant ? { variant } : {};
      const { adapter, summary } =
        kind === "gguf" ? await importGgufLora(source, baseHeader, options) : await importAdapterDir(source, baseHeader, options);
      await writeAdapterDir(target, adapter, { dtype, overwrite: force });
      const { size } = await stat(join(target, WEIGHTS_FILE));
      const ranks = new Set(adapter.modules.map((m) => m.rank));
      process.stdout.write(
        `imported ${v.name}: ${summary.variant}, ${adapter.modules.length} modules, rank ${[...ranks].join("/")}, ` +
          `B sparsity ${((adapter.config.lori?.sparsity ?? 0) * 100).toFixed(1)} %` +
          `${summary.maskInferred ? " (mask from B != 0)" : ""}, A ${adapter.config.lori?.a_init ? "seeded" : "stored"}, ` +
          `${size} bytes (${dtype}) -> ${target}\n`,
      );
      return 0;
    } catch (error) {
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
  },
};

/**
 * import reads a directory; a file given instead (most often a GGUF LoRA) gets a message that says what to pass,
 * instead of the ENOTDIR of reading PATH/adapter_config.json.
 */
/** An adapter directory, or a GGUF LoRA file (a file named *.gguf); anything else is refused in one line. */
async function sourceKind(source: string): Promise<"directory" | "gguf"> {
  const expected = "PATH must be an adapter directory (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA file (.gguf)";
  const info = await stat(source).catch(() => undefined);
  if (info === undefined) throw new CliError(`${source} not found: ${expected}`, 1);
  if (info.isDirectory()) return "directory";
  if (source.toLowerCase().endsWith(".gguf")) return "gguf";
  throw new CliError(`${source} is a file: ${expected}`, 1);
}

/** --dtype f32|f16 as the writer's dtype. */
export function floatDtype(text: string | undefined): "F32" | "F16" {
  if (text === undefined || text === "f32") return "F32";
  if (text === "f16") return "F16";
  throw new CliError(`--dtype must be f32 or f16, got '${text}'`);
}

function variantOption(text: string): LoriVariant {
  const result = loriVariantSchema.safeParse(text);
  if (!result.success) throw new CliError(`--variant must be lora, lori-d, lori-s or dora, got '${text}'`);
  return result.data;
}
