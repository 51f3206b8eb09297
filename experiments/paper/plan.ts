import { createHash } from "node:crypto";
import type { ExperimentConfig } from "./config.js";
import { baseSteps } from "./experiments/base.js";
import { continualSteps } from "./experiments/continual.js";
import { interferenceSteps } from "./experiments/interference.js";
import { mergeSteps } from "./experiments/merge.js";
import { singleSteps } from "./experiments/single.js";
import { sweepSteps } from "./experiments/sweep.js";
import type { ExperimentId, Step } from "./step.js";

/** Every step of a config, in a runnable order (dependencies first). */
export async function buildPlan(config: ExperimentConfig, repoRoot: string): Promise<Step[]> {
  return [
    ...(await baseSteps(config, repoRoot)),
    ...sweepSteps(config),
    ...singleSteps(config),
    ...mergeSteps(config),
    ...continualSteps(config),
    ...interferenceSteps(config),
  ];
}

/** The steps of the chosen experiments plus every step they depend on (all steps without `only`), in plan order. */
export function selectSteps(plan: readonly Step[], only?: readonly ExperimentId[]): Step[] {
  if (!only) return [...plan];
  const byId = new Map(plan.map((s) => [s.id, s]));
  const chosen = new Set<string>();
  const add = (s: Step) => {
    if (chosen.has(s.id)) return;
    chosen.add(s.id);
    for (const dep of s.deps) add(byId.get(dep)!);
  };
  plan.filter((s) => only.includes(s.experiment)).forEach(add);
  return plan.filter((s) => chosen.has(s.id));
}

/**
 * A key per step: a hash of its spec and its dependencies' keys. A stored result whose key differs was made
 * with other settings (or from other inputs) and is redone.
 */
export function stepKeys(plan: readonly Step[]): Map<string, string> {
  const keys = new Map<string, string>();
  for (const s of plan) {
    if (keys.has(s.id)) throw new Error(`plan: duplicate step id ${s.id}`);
    const depKeys = s.deps.map((d) => {
      const key = keys.get(d);
      if (key === undefined) throw new Error(`plan: step ${s.id} depends on ${d}, which is not planned before it`);
      return key;
    });
    keys.set(
      s.id,
      createHash("sha256")
        .update(JSON.stringify({ id: s.id, spec: s.spec, deps: depKeys }))
        .digest("hex")
        .slice(0, 16),
    );
  }
  return keys;
}
