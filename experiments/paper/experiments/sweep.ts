import { createHash } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { TaskId } from "../../../src/tasks/task.js";
import { trainedMethods, type ExperimentConfig } from "../config.js";
import { BASE_MODEL_STEP, DATA_STEP, lrLabel, sweepAdapter, sweepModelFile, sweepStepId, trainSeed } from "../ids.js";
import type { MethodId, SweepPoint, SweepResult } from "../results-schema.js";
import { step, type Step, type StepContext } from "../step.js";
import { writeJsonAtomic } from "../work-dir.js";
import { evaluateTrained, trainedTarget, trainFileWithDev, type BaseModel } from "./base.js";

/**
 * The learning-rate sweep on dev, one step per method: every lr of the method's grid trained on each sweep task
 * (seed `sweep.seed`, the task's own A), scored on the task's dev split. While the best lr sits at an edge of the
 * grid, the grid grows by one half-decade past that edge (at most `maxExtensions` times). Every later run of the
 * method uses its dev-best lr; LoRI-S's sweep takes its masks from the dev-best LoRI-D of each task.
 * Each point is cached in the work dir, so an interrupted sweep resumes at the point it was on.
 */

export function sweepSteps(config: ExperimentConfig): Step[] {
  return trainedMethods(config).map((method) =>
    step<SweepResult>({
      id: sweepStepId(method),
      experiment: "sweep",
      label: `lr sweep ${method}`,
      deps: [BASE_MODEL_STEP, DATA_STEP, ...(method === "lori-s" ? [sweepStepId("lori-d")] : [])],
      spec: {
        method,
        seed: config.sweep.seed,
        tasks: config.sweep.tasks,
        grid: config.sweep.grid[method],
        maxExtensions: config.sweep.maxExtensions,
        steps: config.steps[method],
        batch: config.batch,
        maxLen: config.maxLen,
        logEvery: config.logEvery,
        devSize: config.devSize,
        ...(method === "full" ? {} : { rank: config.rank }),
        ...(method === "lori-s" ? { sparsity: config.sparsity } : {}),
      },
      run: (ctx) => runSweep(ctx, method),
      summary: (r) =>
        `best lr ${r.bestLr} of ${r.grid.join(", ")}${r.extensions > 0 ? ` (grid extended ${r.extensions}x)` : ""}${r.atEdge ? ", still at an edge" : ""}`,
    }),
  );
}

/** The dev-best lr of a method (its sweep must be a dependency of the calling step). */
export function bestLr(ctx: StepContext, method: MethodId): number {
  return ctx.result<SweepResult>(sweepStepId(method)).bestLr;
}

/** One half-decade below / above on the 1-3-10 ladder: 1e-3 -> 3e-4 / 3e-3, 3e-3 -> 1e-3 / 1e-2. */
export function ladderStep(lr: number, direction: "down" | "up"): number {
  const exponent = Math.floor(Math.log10(lr) + 1e-9);
  const mantissa = lr / 10 ** exponent;
  const isOne = mantissa < 2;
  const next = direction === "down" ? (isOne ? lr * 0.3 : lr / 3) : isOne ? lr * 3 : (lr * 10) / 3;
  return Number(next.toPrecision(2));
}

/** Mean dev accuracy over tasks per lr; best: highest mean accuracy, then lowest mean dev loss, then the smaller lr. */
export function pickBest(points: readonly SweepPoint[], tasks: readonly TaskId[]): number {
  const lrs = [...new Set(points.map((p) => p.lr))].sort((a, b) => a - b);
  const scored = lrs.flatMap((lr) => {
    const at = tasks.map((t) => points.find((p) => p.lr === lr && p.task === t));
    if (at.some((p) => p === undefined)) return [];
    const acc = at.reduce((s, p) => s + p!.devAccuracy, 0) / at.length;
    const loss = at.reduce((s, p) => s + (p!.devLoss ?? Number.POSITIVE_INFINITY), 0) / at.length;
    return [{ lr, acc, loss }];
  });
  if (scored.length === 0) throw new Error("sweep: no learning rate was scored on every sweep task");
  scored.sort((a, b) => b.acc - a.acc || a.loss - b.loss || a.lr - b.lr);
  return scored[0]!.lr;
}

/**
 * Grows `initial` past an edge while the best lr sits there (at most `maxExtensions` times), scoring each new lr with
 * `score` (every sweep task of one lr). Returns the grid, every point, the best lr and whether it is still at an edge.
 */
export async function extendingSweep(
  initial: readonly number[],
  tasks: readonly TaskId[],
  maxExtensions: number,
  score: (lr: number) => Promise<SweepPoint[]>,
): Promise<Pick<SweepResult, "grid" | "points" | "bestLr" | "extensions" | "atEdge">> {
  let grid = [...initial].sort((a, b) => a - b);
  const points: SweepPoint[] = [];
  let extensions = 0;
  for (;;) {
    for (const lr of grid) if (!points.some((p) => p.lr === lr)) points.push(...(await score(lr)));
    const best = pickBest(points, tasks);
    const edge = best === grid[0] ? "down" : best === grid.at(-1) ? "up" : null;
    if (edge === null || extensions >= maxExtensions) {
      return { grid, points, bestLr: best, extensions, atEdge: edge !== null };
    }
    const next = ladderStep(edge === "down" ? grid[0]! : grid.at(-1)!, edge);
    grid = edge === "down" ? [next, ...grid] : [...grid, next];
    extensions++;
  }
}

async function runSweep(ctx: StepContext, method: MethodId): Promise<SweepResult> {
  const { sweep } = ctx.config;
  const tasks = sweep.tasks.filter((t) => ctx.config.tasks.includes(t));
  const found = await extendingSweep(sweep.grid[method], tasks, sweep.maxExtensions, async (lr) => {
    const out: SweepPoint[] = [];
    for (const task of tasks) out.push(await sweepPoint(ctx, method, task, lr));
    return out;
  });
  return { method, seed: sweep.seed, tasks, ...found };
}

/** Trains one (method, task, lr) and scores it on dev; cached under the sweep step's key. */
async function sweepPoint(ctx: StepContext, method: MethodId, task: TaskId, lr: number): Promise<SweepPoint> {
  const { config, work } = ctx;
  const cacheDir = join(work.root, "sweep-points");
  await mkdir(cacheDir, { recursive: true });
  const key = createHash("sha256")
    .update(JSON.stringify({ step: ctx.keyOf(sweepStepId(method)), task, lr }))
    .digest("hex")
    .slice(0, 16);
  const cacheFile = join(cacheDir, `${method}-${task}-lr${lrLabel(lr)}.json`);
  const cached = await readFile(cacheFile, "utf8")
    .then((text) => JSON.parse(text) as { key: string; point: SweepPoint })
    .catch(() => undefined);
  if (cached?.key === key) return cached.point;

  const seed = trainSeed(config.sweep.seed, task);
  const data = await trainFileWithDev(ctx, task, seed);
  const target = trainedTarget(
    ctx,
    method,
    (m) => sweepModelFile(m, task, lr),
    (m) => sweepAdapter(m, task, lr),
  );
  const trained = await ctx.lori.train({
    base: ctx.result<BaseModel>(BASE_MODEL_STEP).path,
    data: data.file,
    method,
    out: target.out,
    adaptersDir: work.adapters,
    seed,
    rank: config.rank,
    steps: config.steps[method],
    lr,
    batch: config.batch,
    maxLen: config.maxLen,
    devLog: { every: config.logEvery, valFraction: data.valFraction },
    ...(method === "lori-s" ? { sparsity: config.sparsity, maskFrom: sweepAdapter("lori-d", task, bestLr(ctx, "lori-d")) } : {}),
  });
  const [score] = await evaluateTrained(ctx, target, [task], "dev");
  // a whole model per sweep point (full fine-tuning, merged DoRA): nothing later needs them
  if (target.model) await rm(target.model, { force: true });
  const point: SweepPoint = {
    method,
    task,
    lr,
    devAccuracy: score!.accuracy,
    devLoss: trained.devLoss,
    finalLoss: trained.finalLoss,
    log: trained.log,
    secondsPerStep: trained.steps > 0 ? trained.trainSeconds / trained.steps : null,
  };
  await writeJsonAtomic(cacheFile, { key, point });
  return point;
}
