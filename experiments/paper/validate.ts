import type { PaperResults, TaskScore } from "./results-schema.js";

/**
 * Problems with a results document (empty when it is complete and sane): every section present and non-empty,
 * every accuracy and rate in [0, 1], every number finite. Used by `npm run paper` (a warning) and the smoke test.
 */
export function checkResults(results: PaperResults): string[] {
  const problems: string[] = [];
  const fraction = (x: unknown, where: string) => {
    if (typeof x !== "number" || !(x >= 0 && x <= 1)) problems.push(`${where}: ${String(x)} is not in [0, 1]`);
  };
  const finite = (x: unknown, where: string) => {
    if (typeof x !== "number" || !Number.isFinite(x)) problems.push(`${where}: ${String(x)} is not a finite number`);
  };
  const score = (s: TaskScore, where: string) => {
    fraction(s.accuracy, `${where} ${s.task} accuracy`);
    finite(s.examples, `${where} ${s.task} examples`);
    for (const [group, rate] of Object.entries(s.groups ?? {})) fraction(rate, `${where} ${s.task} ${group}`);
  };
  if (Number.isNaN(Date.parse(results.generatedAt))) problems.push(`generatedAt: '${results.generatedAt}' is not an ISO time`);
  finite(results.runtimeSeconds, "runtimeSeconds");
  finite(results.config.baseParams, "config.baseParams");
  if (results.config.seeds.length === 0) problems.push("config.seeds is empty");
  for (const [name, section] of Object.entries({
    baseScores: results.baseScores,
    sweeps: results.sweeps,
    single: results.single,
    merges: results.merges,
    continual: results.continual,
    interference: results.interference,
  })) {
    if (!Array.isArray(section) || section.length === 0) problems.push(`${name} is empty`);
  }
  results.baseScores.forEach((s) => score(s, "baseScores"));
  for (const sw of results.sweeps ?? []) {
    const where = `sweep ${sw.method}`;
    const grid = [...sw.grid].sort((a, b) => a - b);
    // the rule for a sweep that decides anything; the CI smoke run sweeps two values to stay short
    if (!results.config.smoke) {
      if (grid.length < 4) problems.push(`${where}: only ${grid.length} learning rates (at least 4)`);
      if (grid.length > 0 && grid.at(-1)! / grid[0]! < 30 - 1e-9)
        problems.push(`${where}: the grid spans ${(grid.at(-1)! / grid[0]!).toFixed(1)}x (at least 30x)`);
    }
    if (!grid.includes(sw.bestLr)) problems.push(`${where}: best lr ${sw.bestLr} is not in its grid`);
    for (const p of sw.points) {
      fraction(p.devAccuracy, `${where} ${p.task} lr ${p.lr} devAccuracy`);
      finite(p.finalLoss, `${where} ${p.task} lr ${p.lr} finalLoss`);
    }
    for (const r of results.single.filter((r) => r.method === sw.method && r.lr !== sw.bestLr)) {
      problems.push(`single ${r.method} ${r.task} seed ${r.seed}: lr ${r.lr} is not the dev-best ${sw.bestLr}`);
    }
  }
  for (const r of results.single) {
    const where = `single ${r.method} ${r.task} seed ${r.seed}`;
    score(r.score, where);
    for (const key of ["trainableParams", "bytes", "trainSeconds", "finalLoss"] as const) finite(r[key], `${where} ${key}`);
  }
  for (const r of results.merges) {
    r.scores.forEach((s) => score(s, `merge ${r.merge} ${r.method} seed ${r.seed}`));
    Object.values(r.weights).forEach((w) => finite(w, `merge ${r.merge} ${r.method} weight`));
  }
  for (const r of results.continual) {
    const where = `continual ${r.method} ${r.task} seed ${r.seed}`;
    fraction(r.safetyBefore, `${where} safetyBefore`);
    fraction(r.safetyAfter, `${where} safetyAfter`);
    fraction(r.taskAccuracy, `${where} taskAccuracy`);
  }
  for (const r of results.interference) {
    const where = `interference ${r.method} ${r.pair.join("/")} seed ${r.seed}`;
    if (r.maskJaccard !== null) fraction(r.maskJaccard, `${where} maskJaccard`);
    finite(r.meanAngleDeg, `${where} meanAngleDeg`);
    finite(r.crossTermRatio, `${where} crossTermRatio`);
  }
  return problems;
}
