import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parsePaperArgs, USAGE } from "./args.js";
import { InterruptedError, interruptChildren } from "./cli-runner.js";
import { readFile } from "node:fs/promises";
import { resolveConfig } from "./config.js";
import { countWork, formatEstimate, timingsFromResults } from "./estimate.js";
import { runPaper } from "./run-paper.js";
import { StepFailedError } from "./scheduler.js";

/** `npm run paper -- [options]`: see USAGE. Exit 0 done, 1 a step failed, 2 bad options, 130 interrupted. */

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function main(argv: readonly string[]): Promise<number> {
  let args: ReturnType<typeof parsePaperArgs>;
  let config: ReturnType<typeof resolveConfig>;
  try {
    args = parsePaperArgs(argv);
    if (args.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    config = resolveConfig(args.configName, args.overrides);
  } catch (error) {
    process.stderr.write(`paper: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.estimate !== undefined) {
    const file = resolve(args.estimate || join(REPO_ROOT, "docs", "results.json"));
    try {
      const results = JSON.parse(await readFile(file, "utf8"));
      process.stdout.write(`${formatEstimate(config, countWork(config), timingsFromResults(results, config.jobs, file))}\n`);
      return 0;
    } catch (error) {
      process.stderr.write(`paper: --estimate: ${(error as Error).message}\n`);
      return 2;
    }
  }
  const work = resolve(args.work ?? join(REPO_ROOT, ".cache", "paper", config.name));
  // The smoke run's numbers mean nothing: they stay out of docs/ unless asked for.
  const outDir = resolve(args.outDir ?? (config.smoke ? join(work, "out") : join(REPO_ROOT, "docs")));

  let stopping = false;
  let firstSigint = 0;
  process.on("SIGINT", () => {
    // One Ctrl-C can arrive more than once (the terminal, npm and tsx all pass it on): only a later one quits at once.
    if (stopping) {
      if (performance.now() - firstSigint > 2000) process.exit(130);
      return;
    }
    stopping = true;
    firstSigint = performance.now();
    process.stderr.write("\npaper: stopping (finished steps are kept; Ctrl-C again to quit at once)\n");
    interruptChildren();
  });

  try {
    const started = performance.now();
    const outcome = await runPaper({
      config,
      repoRoot: REPO_ROOT,
      work,
      outDir,
      ...(args.only ? { only: args.only } : {}),
      stopping: () => stopping,
    });
    if (outcome.interrupted) return interrupted();
    const took = ((performance.now() - started) / 1000).toFixed(1);
    process.stderr.write(
      `paper: ${outcome.ran} steps run, ${outcome.reused} reused, ${took} s; total runtime ${outcome.results!.runtimeSeconds.toFixed(1)} s\n` +
        `paper: wrote ${outcome.files!.json} and ${outcome.files!.markdown}\n`,
    );
    if (outcome.problems.length > 0 && !args.only) {
      process.stderr.write(`paper: results are incomplete:\n${outcome.problems.map((p) => `  - ${p}`).join("\n")}\n`);
    }
    return 0;
  } catch (error) {
    if (stopping || (error instanceof StepFailedError && error.cause instanceof InterruptedError)) return interrupted();
    process.stderr.write(`paper: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write("paper: finished steps are kept; rerun the same command to continue\n");
    return 1;
  }
}

function interrupted(): number {
  process.stderr.write("paper: interrupted; rerun the same command to continue\n");
  return 130;
}

process.exitCode = await main(process.argv.slice(2));
