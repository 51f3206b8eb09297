/**
 * Scores a set of demo adapters the way `npm run demo:build` does (scores.ts), without training: e.g. an older
 * build, to compare. Prints the scores as JSON.
 *
 *   node --import tsx experiments/demo/score.ts --adapters-dir DIR [--model models/lori-demo.gguf] [--threads N]
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEMO_PROFILES } from "./profile.js";
import { scoreDemo } from "./scores.js";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { "adapters-dir": { type: "string" }, model: { type: "string" }, threads: { type: "string" } },
  });
  if (!values["adapters-dir"]) throw new Error("--adapters-dir is required");
  const profile = DEMO_PROFILES.demo;
  const scores = await scoreDemo(
    {
      model: resolve(values.model ?? "models/lori-demo.gguf"),
      adaptersDir: resolve(values["adapters-dir"]),
      cwd: process.cwd(),
      seed: profile.evalSeed,
      limit: profile.evalLimit,
      threads: values.threads === undefined ? undefined : Number(values.threads),
    },
    (m) => process.stderr.write(`[score] ${m}\n`),
  );
  process.stdout.write(`${JSON.stringify(scores, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`score: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
