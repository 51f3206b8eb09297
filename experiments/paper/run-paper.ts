import { checkCliBuilt } from "./cli-runner.js";
import type { ExperimentConfig } from "./config.js";
import { LoriCli } from "./lori-commands.js";
import { buildPlan, selectSteps, stepKeys } from "./plan.js";
import { assembleResults } from "./results.js";
import type { PaperResults } from "./results-schema.js";
import { runSteps } from "./scheduler.js";
import type { ExperimentId } from "./step.js";
import { checkResults } from "./validate.js";
import { createWorkDir, RuntimeClock, workPaths } from "./work-dir.js";
import { writeOutputs } from "./write-outputs.js";

/** The whole pipeline: plan, run what is not finished, assemble results.json, render results.md. */

export interface RunPaperOptions {
  readonly config: ExperimentConfig;
  readonly repoRoot: string;
  readonly work: string;
  readonly outDir: string;
  readonly only?: readonly ExperimentId[];
  readonly log?: (line: string) => void;
  /** True once no further step should start (Ctrl-C); runPaper then returns `interrupted`. */
  readonly stopping?: () => boolean;
}

export interface RunPaperResult {
  readonly interrupted: boolean;
  readonly results?: PaperResults;
  /** What checkResults found wrong or missing in results.json. */
  readonly problems: readonly string[];
  readonly files?: { readonly json: string; readonly markdown: string };
  readonly ran: number;
  readonly reused: number;
}

export async function runPaper(options: RunPaperOptions): Promise<RunPaperResult> {
  const { config } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const stopping = options.stopping ?? (() => false);
  await checkCliBuilt();
  const work = workPaths(options.work);
  await createWorkDir(work);
  const clock = await RuntimeClock.open(work);
  const plan = await buildPlan(config, options.repoRoot);
  const keys = stepKeys(plan);
  const steps = selectSteps(plan, options.only);
  log(
    `paper: config ${config.name}, seeds ${config.seeds.join(",")}, ${steps.length} steps, ${config.jobs} at a time, work dir ${work.root}`,
  );
  const lori = new LoriCli({
    cwd: options.repoRoot,
    threads: config.threads,
    ...(config.gpu ? { gpu: config.gpu } : {}),
    sharedServer: { adaptersDir: work.adapters },
  });
  let ran: number;
  let reused: number;
  try {
    ({ ran, reused } = await runSteps(steps, { config, work, lori, keys, clock, jobs: config.jobs, log, stopping }));
  } finally {
    await lori.close();
  }
  if (stopping()) return { interrupted: true, problems: [], ran, reused };
  const results = await assembleResults(plan, keys, work, config, clock.seconds());
  const files = await writeOutputs(results, options.outDir);
  await clock.save();
  return { interrupted: false, results, problems: checkResults(results), files, ran, reused };
}
