import { stat } from "node:fs/promises";
import { join } from "node:path";
import { WEIGHTS_FILE, writeAdapterDir } from "../../lora/adapter-io.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, pathExists, readAdapterRef, storedAdapterDir } from "../../lora/adapter-store.js";
import type { MergeInput } from "../../lora/merge.js";
import { mergeAdapters } from "../../lora/merge-methods.js";
import {
  DEFAULT_DARE_SEED,
  DEFAULT_DENSITY,
  DEFAULT_MAJORITY_SIGN_METHOD,
  isMergeMethod,
  MERGE_METHODS,
  mergeParameterProblem,
  PRUNING_METHODS,
  RANDOM_METHODS,
  resolveMergeParameters,
  SIGN_ELECTING_METHODS,
  type MergeMethod,
  type MergeParameterName,
  type MergeParameters,
} from "../../lora/merge-options.js";
import type { MajoritySignMethod } from "../../lora/merge-task-tensors.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";
import { floatDtype } from "./import.js";

const help = `Usage: lori-server merge --method METHOD --out NAME A[:W] B[:W] ... [options]

Merges stored adapters into a new one with PEFT add_weighted_adapter semantics (c_i = W_i * alpha_i / r_i; W_i
may be negative). Every result has r = alpha = rank (scale 1) and records its inputs in its lineage.
  cat              A = [c_1 A_1; ...; c_n A_n], B = [B_1 | ... | B_n]: exactly sum_i c_i B_i A_i, rank sum r_i.
                   Adapters sharing one seeded A stay at rank r (B = sum c_i B_i). The exact merge.
  linear           A = sum sign(c_i) sqrt|c_i| A_i, B = sum sqrt|c_i| B_i (PEFT's and the LoRI paper's): it adds
                   cross terms B_i A_j.
  ties             A and B each: keep the top D of every input's entries by magnitude, elect the majority sign per
                   entry, average the weighted entries that agree (TIES).
  dare_linear      A and B each: keep every entry with probability D, scale kept ones by 1/D, weighted sum (DARE).
  dare_ties        dare's random pruning, then ties' sign election and mean.
  magnitude_prune  A and B each: keep the top D by magnitude, weighted sum.
  svd              delta W = sum_i c_i B_i A_i, truncated SVD to --rank: the best rank-k approximation.
linear, ties, dare_* and magnitude_prune need equal ranks and every module in every adapter; their result has a
dense A (a plain LoRA adapter, not LoRI). The result is written atomically to <adapters-dir>/NAME; an existing
NAME is refused unless --force.

Options:
  --method METHOD       cat|linear|ties|dare_linear|dare_ties|magnitude_prune|svd (required)
  --out NAME            name of the merged adapter (required)
  --density D           ties, dare_*, magnitude_prune: fraction kept per tensor, 0 < D <= 1 (default ${DEFAULT_DENSITY})
  --majority-sign M     ties, dare_ties: total (sign of the sum) or frequency (sign of the count) (default ${DEFAULT_MAJORITY_SIGN_METHOD})
  --seed N              dare_*: seed of the random pruning, integer >= 0 (default ${DEFAULT_DARE_SEED}); same seed, same bytes
  --rank K              svd: rank of the result (default the largest input rank)
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

const CLI_PARAMETER_NAMES: Readonly<Record<MergeParameterName, string>> = {
  density: "--density",
  majoritySignMethod: "--majority-sign",
  seed: "--seed",
  rank: "--rank",
};

/** A number option as given; the range checks are merge-options.ts's, shared with the HTTP API. */
function numberOption(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value)) throw new CliError(`${flag} must be a number, got '${raw}'`);
  return value;
}

interface RawParameters {
  readonly density?: string | undefined;
  readonly "majority-sign"?: string | undefined;
  readonly seed?: string | undefined;
  readonly rank?: string | undefined;
}

function mergeParameters(method: MergeMethod, raw: RawParameters): MergeParameters {
  const parameters: MergeParameters = {
    density: numberOption("--density", raw.density),
    // Checked against total|frequency just below, with the other parameters.
    majoritySignMethod: raw["majority-sign"] as MajoritySignMethod | undefined,
    seed: numberOption("--seed", raw.seed),
    rank: numberOption("--rank", raw.rank),
  };
  const problem = mergeParameterProblem(method, parameters, CLI_PARAMETER_NAMES);
  if (problem) throw new CliError(problem.message);
  return parameters;
}

/** "ties, density 0.5, majority sign total": the method and the parameters it used, defaults included. */
function describeMerge(method: MergeMethod, parameters: MergeParameters): string {
  const { density, majoritySignMethod, seed } = resolveMergeParameters(method, parameters);
  return [
    method,
    ...(PRUNING_METHODS.includes(method) ? [`density ${density}`] : []),
    ...(SIGN_ELECTING_METHODS.includes(method) ? [`majority sign ${majoritySignMethod}`] : []),
    ...(RANDOM_METHODS.includes(method) ? [`seed ${seed}`] : []),
  ].join(", ");
}

export const mergeCommand: CliCommand = {
  name: "merge",
  summary: "Merge stored adapters (cat: exact weighted sum; linear, ties, dare_*, magnitude_prune, svd: PEFT's)",
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
        density: { type: "string" },
        "majority-sign": { type: "string" },
        seed: { type: "string" },
        rank: { type: "string" },
      },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    if (v.method === undefined || !isMergeMethod(v.method)) {
      const methods = MERGE_METHODS.join("|");
      throw new CliError(
        v.method === undefined ? `--method ${methods} is required` : `--method must be one of ${methods}, got '${v.method}'`,
      );
    }
    const method = v.method;
    const parameters = mergeParameters(method, v);
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
      const merged = mergeAdapters(inputs, method, parameters);
      await writeAdapterDir(target, merged, { dtype, overwrite: force });
      // Once written, so that a refused or failed merge prints its one error line and nothing else.
      if (method !== "cat" && method !== "svd") {
        process.stderr.write(
          `note: ${method} combines the A and the B matrices separately (as PEFT and the LoRI paper do), so the product ` +
            "adds cross terms B_i A_j; use --method cat for the exact sum_i c_i B_i A_i\n",
        );
      }
      const { size } = await stat(join(target, WEIGHTS_FILE));
      const ranks = merged.modules.map((m) => m.rank);
      const lo = Math.min(...ranks);
      const hi = Math.max(...ranks);
      process.stdout.write(
        `merged ${refs.map((r) => `${r.name}:${r.weight}`).join(" ")} (${describeMerge(method, parameters)}) -> ${v.out}: ` +
          `${merged.modules.length} modules, rank ${lo === hi ? lo : `${lo}-${hi}`}, ${size} bytes (${dtype})\n`,
      );
      return 0;
    } catch (error) {
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
  },
};
