import { stat } from "node:fs/promises";
import { join } from "node:path";
import { WEIGHTS_FILE } from "../../lora/adapter-io.js";
import { describeAdapter, describePair, type AdapterReport, type PairReport, type Summary } from "../../lora/adapter-report.js";
import { DEFAULT_ADAPTERS_DIR, oneLineMessage, readAdapterRef } from "../../lora/adapter-store.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server inspect NAME|PATH [--json] [options]
       lori-server inspect --pair A B [--weights W1,W2] [--json] [options]

One adapter: variant, seed, rsLoRA, per-module rank / alpha / sparsity / trainable parameters, bytes on disk
against the same adapter as a dense fp16 PEFT file (ratio), base fingerprint and lineage.
Two adapters (--pair): how much they can interfere when combined: B mask overlap (Jaccard), principal angles
between their A subspaces (min / mean / max degrees; 90 = orthogonal) and the relative size of the cross terms
a linear merge adds, ||sqrt(c1 c2)(B1 A2 + B2 A1)|| / ||c1 B1 A1 + c2 B2 A2||, c = W * alpha / r.

Options:
  --pair               compare two adapters
  --weights W1,W2      merge weights for the cross-term ratio (default 1,1)
  --json               print JSON instead of text
  --adapters-dir DIR   adapter store (default ./${DEFAULT_ADAPTERS_DIR})
  -h, --help           this help
`;

export const inspectCommand: CliCommand = {
  name: "inspect",
  summary: "Show an adapter's structure and size, or the interference between two (--pair)",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      { json: { type: "boolean" }, pair: { type: "boolean" }, weights: { type: "string" }, "adapters-dir": { type: "string" } },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const v = parsed.values;
    const refs = parsed.positionals;
    const want = v.pair ? 2 : 1;
    if (refs.length !== want) {
      throw new CliError(
        v.pair ? "--pair needs exactly two adapters: inspect --pair A B" : "inspect needs exactly one NAME or PATH (or --pair A B)",
      );
    }
    if (!v.pair && v.weights !== undefined) throw new CliError("--weights applies to --pair only");
    const weights = parseWeights(v.weights);
    const adaptersDir = v["adapters-dir"] ?? DEFAULT_ADAPTERS_DIR;
    try {
      if (v.pair) {
        const [x, y] = await Promise.all(refs.map((ref) => readAdapterRef(ref, adaptersDir)));
        const report = describePair(x!.adapter, y!.adapter, weights);
        process.stdout.write(
          v.json ? `${JSON.stringify({ a: refs[0], b: refs[1], weights, ...report }, null, 2)}\n` : pairText(refs, report),
        );
        return 0;
      }
      const { dir, adapter } = await readAdapterRef(refs[0]!, adaptersDir);
      const { size } = await stat(join(dir, WEIGHTS_FILE));
      const report = describeAdapter(adapter, size);
      process.stdout.write(v.json ? `${JSON.stringify({ name: refs[0], dir, ...report }, null, 2)}\n` : adapterText(refs[0]!, dir, report));
      return 0;
    } catch (error) {
      throw error instanceof CliError ? error : new CliError(oneLineMessage(error), 1);
    }
  },
};

function parseWeights(text: string | undefined): [number, number] {
  if (text === undefined) return [1, 1];
  const parts = text.split(",").map(Number);
  if (parts.length !== 2 || !parts.every(Number.isFinite)) throw new CliError(`--weights must be two numbers 'W1,W2', got '${text}'`);
  return parts as [number, number];
}

const int = (n: number) => n.toLocaleString("en-US");
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const deg = (s: Summary | null) => (s ? `${s.min.toFixed(1)} / ${s.mean.toFixed(1)} / ${s.max.toFixed(1)} deg` : "n/a");

function lineageText(lineage: readonly unknown[]): string {
  if (lineage.length === 0) return "(none)";
  return lineage
    .map((entry) => {
      const e = entry as { op?: string; method?: string; source?: string; inputs?: { name?: string | null; weight?: number }[] };
      if (e.op === "merge") return `merge ${e.method ?? "?"}(${(e.inputs ?? []).map((i) => `${i.name ?? "?"}:${i.weight}`).join(", ")})`;
      if (e.op === "import") return `import(${e.source ?? "?"})`;
      return e.op ?? "?";
    })
    .join(" -> ");
}

function adapterText(name: string, dir: string, r: AdapterReport): string {
  const rows = r.perModule.map(
    (m) =>
      `  ${String(m.layer).padStart(5)}  ${m.module.padEnd(9)} ${String(m.rank).padStart(5)} ${String(m.alpha).padStart(7)} ` +
      `${String(m.inFeatures).padStart(6)} ${String(m.outFeatures).padStart(6)}  ${m.a.padEnd(6)} ${pct(m.sparsity).padStart(8)} ${int(m.trainableParams).padStart(12)}`,
  );
  return [
    `adapter ${name} (${dir})`,
    `variant ${r.variant}, ${r.modules} modules, rank ${r.ranks.min === r.ranks.max ? r.ranks.min : `${r.ranks.min}-${r.ranks.max}`}` +
      `${r.useRslora ? ", rsLoRA" : ""}, A ${r.seed === null ? "stored" : `seeded (seed ${r.seed})`}`,
    `B sparsity ${pct(r.sparsity)}; trainable params ${int(r.trainableParams)} (LoRA at these ranks: ${int(r.loraParams)})`,
    `bytes on disk ${int(r.bytesOnDisk)} vs dense fp16 PEFT ${int(r.denseFp16PeftBytes)}: ratio ${pct(r.ratioToDenseFp16)}`,
    `base ${r.baseFingerprint ? `${r.baseFingerprint.architecture} ${r.baseFingerprint.sha256.slice(0, 16)}` : "(no fingerprint)"}` +
      `${r.baseModel ? ` (${r.baseModel})` : ""}`,
    `lineage ${lineageText(r.lineage)}`,
    `  layer  module     rank   alpha     in    out  A      sparsity    trainable`,
    ...rows,
    "",
  ].join("\n");
}

function pairText(refs: readonly string[], r: PairReport): string {
  return [
    `${refs[0]} vs ${refs[1]}: ${r.sharedModules} shared modules`,
    `mask overlap (Jaccard) ${pct(r.maskOverlap)}`,
    `principal angles min / mean / max ${deg(r.principalAnglesDeg)}`,
    `cross-term ratio ${r.crossTermRatio === null ? "n/a (unequal ranks or opposite signs)" : r.crossTermRatio.toFixed(4)}`,
    "",
  ].join("\n");
}
