import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readGgufFile } from "../../gguf/gguf-reader.js";
import { WEIGHTS_FILE, writeAdapterDir } from "../../lora/adapter-io.js";
import { loriVariantSchema, type LoriVariant } from "../../lora/adapter-config.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, pathExists, storedAdapterDir } from "../../lora/adapter-store.js";
import { importAdapterDir } from "../../lora/peft-import.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server import PATH --name NAME --base MODEL.gguf [options]

Imports an adapter directory (adapter_config.json + adapter_model.safetensors): a PEFT LoRA, a published
LoRI-D / LoRI-S adapter (F32, F16 or BF16), or one of ours, for a llama-family GGUF base. Every module is
checked against the base (tensor present, shape [in, out] as in the GGUF); DoRA, unknown target modules,
another architecture, NaN/Inf values and shapes that do not fit are refused with one message listing each
problem, and nothing is written. A B that is mostly zeros (a LoRI-S adapter) gets its mask from B != 0 and is
stored sparse; a stored A equal to the seeded A of the config's lori.a_init seed is stored as the seed.
The result is written atomically to <adapters-dir>/NAME with the base's fingerprint and an import lineage.

Options:
  --name NAME              adapter name (required): 1-64 of [A-Za-z0-9._-], no leading '.', no '..'
  --base MODEL.gguf        the base model the adapter is for (required)
  --adapters-dir DIR       adapter store (default ./${DEFAULT_ADAPTERS_DIR})
  --dtype f32|f16          dtype of stored A / B / B values (default f32: lossless)
  --variant lora|lori-d|lori-s
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
      await refuseNonDirectory(source);
      const baseHeader = await readGgufFile(v.base);
      const { adapter, summary } = await importAdapterDir(source, baseHeader, variant ? { variant } : {});
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
async function refuseNonDirectory(source: string): Promise<void> {
  const info = await stat(source).catch(() => undefined);
  if (info === undefined) throw new CliError(`${source} not found: PATH must be an adapter directory (adapter_config.json + adapter_model.safetensors)`, 1);
  if (info.isDirectory()) return;
  if (source.toLowerCase().endsWith(".gguf")) {
    throw new CliError(
      `${source} is a GGUF file: importing GGUF LoRA adapters is not supported yet; import the PEFT directory ` +
        `(adapter_config.json + adapter_model.safetensors) instead`,
      1,
    );
  }
  throw new CliError(`${source} is a file: PATH must be an adapter directory (adapter_config.json + adapter_model.safetensors)`, 1);
}

/** --dtype f32|f16 as the writer's dtype. */
export function floatDtype(text: string | undefined): "F32" | "F16" {
  if (text === undefined || text === "f32") return "F32";
  if (text === "f16") return "F16";
  throw new CliError(`--dtype must be f32 or f16, got '${text}'`);
}

function variantOption(text: string): LoriVariant {
  const result = loriVariantSchema.safeParse(text);
  if (!result.success) throw new CliError(`--variant must be lora, lori-d or lori-s, got '${text}'`);
  return result.data;
}
