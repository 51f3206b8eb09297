import { parseArgs } from "node:util";
import type { ConfigOverrides } from "./config.js";
import { EXPERIMENT_IDS, type ExperimentId } from "./step.js";

export const USAGE = `Usage: npm run paper -- [options]

Runs the LoRI paper's experiments in miniature (single-task, merging, continual learning, interference) and
writes results.json and results.md. Resumable: finished steps are kept in the work dir and skipped on a rerun.

Options:
  --config full|smoke   experiment settings (default full; smoke: a tiny random base, a few steps, for CI)
  --work DIR            work dir (default .cache/paper/<config>)
  --out-dir DIR         where results.json / results.md go (default docs; smoke: <work>/out)
  --seeds 1,2,3         seeds (default from the config)
  --only LIST           experiments to run, comma-separated from ${EXPERIMENT_IDS.join(",")}
                        (plus the steps they need); results.json still holds everything finished
  --base FILE.gguf      base model (default from the config: models/lori-demo.gguf)
  --threads N           --threads of every train and eval
  --jobs N              steps run at once
  --estimate            print the work of the config and its estimated wall time, and run nothing
  --timings-from FILE   results.json whose timings --estimate uses (default docs/results.json)
  -h, --help            this help
`;

export interface PaperArgs {
  readonly configName: string;
  readonly work?: string;
  readonly outDir?: string;
  readonly only?: readonly ExperimentId[];
  readonly overrides: ConfigOverrides;
  readonly help: boolean;
  /** --estimate: the results.json to take timings from ("" for the default). */
  readonly estimate?: string;
}

export function parsePaperArgs(argv: readonly string[]): PaperArgs {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: "string" },
      work: { type: "string" },
      "out-dir": { type: "string" },
      seeds: { type: "string" },
      only: { type: "string" },
      base: { type: "string" },
      threads: { type: "string" },
      jobs: { type: "string" },
      help: { type: "boolean", short: "h" },
      estimate: { type: "boolean" },
      "timings-from": { type: "string" },
    },
  });
  return {
    configName: values.config ?? "full",
    ...(values.work !== undefined ? { work: values.work } : {}),
    ...(values["out-dir"] !== undefined ? { outDir: values["out-dir"] } : {}),
    ...(values.only !== undefined ? { only: list(values.only, "--only").map(experimentId) } : {}),
    overrides: {
      ...(values.seeds !== undefined ? { seeds: list(values.seeds, "--seeds").map((s) => integer(s, "--seeds", 0)) } : {}),
      ...(values.base !== undefined ? { base: values.base } : {}),
      ...(values.threads !== undefined ? { threads: integer(values.threads, "--threads", 1) } : {}),
      ...(values.jobs !== undefined ? { jobs: integer(values.jobs, "--jobs", 1) } : {}),
    },
    help: values.help ?? false,
    ...(values.estimate ? { estimate: values["timings-from"] ?? "" } : {}),
  };
}

function list(text: string, flag: string): string[] {
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new Error(`${flag} needs a comma-separated list`);
  return items;
}

function integer(text: string, flag: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) throw new Error(`${flag}: '${text}' is not an integer >= ${min}`);
  return value;
}

function experimentId(text: string): ExperimentId {
  if (!(EXPERIMENT_IDS as readonly string[]).includes(text))
    throw new Error(`--only: unknown experiment '${text}' (use ${EXPERIMENT_IDS.join(", ")})`);
  return text as ExperimentId;
}
