import { stat } from "node:fs/promises";
import { join } from "node:path";
import { WEIGHTS_FILE, writeAdapterDir } from "../../lora/adapter-io.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, pathExists, readAdapterRef, storedAdapterDir } from "../../lora/adapter-store.js";
import { mergeCat, mergeLinear, type MergeInput } from "../../lora/merge.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";
import { floatDtype } from "./import.js";

const help = `Usage: lori-server merge --method cat|linear --out NAME A[:W] B[:W] ... [options]

Merges stored adapters into a new one (PEFT add_weighted_adapter semantics, c_i = W_i * alpha_i / r_i):
  cat     A = [c_1 A_1; ...; c_n A_n], B = [B_1 | ... | B_n]: exactly sum_i c_i B_i A_i, rank sum r_i, any real
          weights (negative ones subtract). Adapters sharing one seeded A stay at rank r (B = sum c_i B_i).
  linear  A = sum sqrt(c_i) A_i, B = sum sqrt(c_i) B_i (PEFT's and the LoRI paper's 'linear'): equal ranks,
          positive weights; it adds cross terms B_i A_j. Kept for comparison; cat is exact.
Weights default to 1. The result (scale 1 per module, lineage recorded) is written atomically to
<adapters-dir>/NAME; an existing NAME is refused unless --force.

Options:
  --method cat|linear   merge method (required)
  --out NAME            name of the merged adapter (required)
  --adapters-dir DIR    adapter store (default ./${DEFAULT_ADAPTERS_DIR})
  --dtype f32|f16       dtype of the stored result (default f32)
  --force               replace an existing adapter NAME (it may be one of the inputs)
  -h, --help            this help
`;

/** "name[:weight]": the weight follows the last ':' (adapter names never contain one). */
export function parseWeighted(text: string): { name: string; weight: number } {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return { name: text, weight: 1 };
  const name = text.slice(0, colon);
  const raw = text.slice(colon + 1);
  const weight = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(weight)) throw new CliError(`weight of '${name}' must be a finite number, got '${raw}'`);
  return { name, weight };
}

export const mergeCommand: CliCommand = {
  name: "merge",
  summary: "Merge stored adapters (cat: exact weighted sum; linear: PEFT's, with cross terms)",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      {
        method: { type: "string" },
        out: { type: "string" },
        "adapters-dir": { type: "string" },
        dtype: { type: "string" },
        force: { type: "boolean" },
      },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    if (v.method !== "cat" && v.method !== "linear") {
      throw new CliError(v.method === undefined ? "--method cat|linear is required" : `--method must be cat or linear, got '${v.method}'`);
    }
    if (!v.out) throw new CliError("--out NAME is required");
    if (parsed.positionals.length === 0) throw new CliError("name at least one adapter to merge: A[:W] B[:W] ...");
    const dtype = floatDtype(v.dtype);
    const adaptersDir = v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR;
    const refs = parsed.positionals.map(parseWeighted);
    try {
      const target = storedAdapterDir(adaptersDir, v.out);
      const force = v.force ?? false;
      if (!force && (await pathExists(target))) {
        throw new CliError(`adapter '${v.out}' already exists in ${adaptersDir} (use --force to replace it)`, 1);
      }
      const inputs: MergeInput[] = [];
      for (const { name, weight } of refs) inputs.push({ adapter: (await readAdapterRef(name, adaptersDir)).adapter, weight, name });
      if (v.method === "linear") {
        process.stderr.write(
          "note: linear merge = (sum sqrt(c_i) B_i)(sum sqrt(c_i) A_i): it adds cross terms sqrt(c_i c_j) B_i A_j " +
            "(as PEFT and the LoRI paper's 'linear' do); use --method cat for the exact sum_i c_i B_i A_i\n",
        );
      }
      const merged = v.method === "cat" ? mergeCat(inputs) : mergeLinear(inputs);
      await writeAdapterDir(target, merged, { dtype, overwrite: force });
      const { size } = await stat(join(target, WEIGHTS_FILE));
      const ranks = merged.modules.map((m) => m.rank);
      const lo = Math.min(...ranks);
      const hi = Math.max(...ranks);
      process.stdout.write(
        `merged ${refs.map((r) => `${r.name}:${r.weight}`).join(" ")} (${v.method}) -> ${v.out}: ` +
          `${merged.modules.length} modules, rank ${lo === hi ? lo : `${lo}-${hi}`}, ${size} bytes (${dtype})\n`,
      );
      return 0;
    } catch (error) {
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
  },
};
