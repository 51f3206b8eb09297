import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Adapter } from "../lora/adapter.js";
import { isDoraAdapter } from "../lora/dora.js";
import type { TargetModule } from "../lora/target-modules.js";
import { runNativeTrainer, type EvalEvent, type TrainConfig } from "./native-trainer.js";
import { writeTokenShards } from "./token-shards.js";
import { loadSequences, readBase, TrainError, type RunSettings } from "./train-common.js";
import { modulesAsMatrices, shortTarget, writeTrainerMatrices, type ModuleMatrix } from "./trainer-tensors.js";
import { WORK_FILES } from "./train-plan.js";

/**
 * The mean loss per supervised token (nats/token) of a data file under a base model and at most one adapter: the
 * native trainer's validation pass, run with zero training steps and the adapter's B as its starting B. It is the
 * same number `train` reports as its validation loss, computed the same way, so the two can be compared.
 */

export interface DataLossOptions {
  readonly base: string;
  readonly file: string;
  readonly chatTemplate?: string;
  /** With its weight (B is scaled by it: the adapter's output is linear in B). None: the base alone. */
  readonly adapter?: { readonly adapter: Adapter; readonly weight: number };
  readonly run?: Pick<RunSettings, "gpu" | "threads" | "llama">;
}

export interface DataLoss {
  readonly lossPerToken: number;
  /** Supervised tokens scored. */
  readonly tokens: number;
  readonly sequences: number;
}

export async function dataLossPerToken(options: DataLossOptions): Promise<DataLoss> {
  const { base, info } = await readBase(options.base);
  const spec = options.adapter
    ? trainerSpec(options.adapter.adapter)
    : { method: "lori-d" as const, rank: 1, alpha: 1, seed: 0, targets: ["q_proj"] as TargetModule[] };
  const sequences = await loadSequences({
    data: { file: options.file, ...(options.chatTemplate !== undefined ? { chatTemplate: options.chatTemplate } : {}) },
    base,
    seed: 0,
    valFraction: 0,
    ...(options.run?.llama ? { llama: options.run.llama } : {}),
  });
  const dir = await mkdtemp(join(tmpdir(), "lori-loss-"));
  try {
    const shards = join(dir, WORK_FILES.validation);
    await writeTokenShards(shards, sequences.train);
    let initB: string | undefined;
    if (options.adapter) {
      const { adapter, weight } = options.adapter;
      const wanted = new Set(spec.targets);
      const modules = adapter.modules.filter((m) => wanted.has(m.module) && m.layer < info.nLayer);
      const scaled: ModuleMatrix[] = modulesAsMatrices(modules).map((m) => ({ ...m, data: m.data.map((x) => x * weight) }));
      const denseA = new Map<string, Float32Array>();
      for (const m of modules) if (m.a.kind === "dense") denseA.set(`${m.layer}.${m.module}`, m.a.data);
      initB = join(dir, WORK_FILES.initB);
      await writeTrainerMatrices(initB, info, scaled, denseA);
    }
    const config: TrainConfig = {
      mode: "train",
      model: base,
      shards,
      evalShards: shards,
      output: join(dir, WORK_FILES.output("loss")),
      steps: 0,
      method: spec.method,
      rank: spec.rank,
      alpha: spec.alpha,
      seed: spec.seed,
      targets: spec.targets.map(shortTarget),
      // Long enough for every sequence: truncating would score fewer tokens than the file has.
      maxLen: Math.max(2, ...sequences.train.map((s) => s.tokens.length)),
      ...(initB ? { initB } : {}),
      ...(options.run?.gpu ? { gpu: options.run.gpu } : {}),
      ...(options.run?.threads ? { threads: options.run.threads } : {}),
    };
    const events = await runNativeTrainer(config, { forwardSigint: false }).catch((error: unknown) => {
      throw new TrainError(`loss: ${(error as Error).message.split("\n")[0]}`);
    });
    const evaluation = events.filter((e): e is EvalEvent => e.event === "eval").at(-1);
    if (!evaluation) throw new TrainError("loss: the trainer reported no evaluation");
    return { lossPerToken: evaluation.nll_per_token, tokens: evaluation.n_targets, sequences: evaluation.n_seqs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What the trainer needs to rebuild the adapter: one rank and alpha, its targets, and its seed (LoRI) or A (LoRA). */
function trainerSpec(adapter: Adapter): { method: "lori-d" | "lora"; rank: number; alpha: number; seed: number; targets: TargetModule[] } {
  const first = adapter.modules[0];
  if (!first) throw new TrainError("loss: the adapter has no modules");
  if (adapter.config.use_rslora) throw new TrainError("loss: rsLoRA adapters are not supported by the trainer");
  if (isDoraAdapter(adapter))
    throw new TrainError("loss: DoRA adapters are scored as merged models (export --format merged-gguf, then evaluate that model)");
  if (adapter.modules.some((m) => m.rank !== first.rank || m.alpha !== first.alpha))
    throw new TrainError("loss: needs one rank and alpha over all modules");
  const targets = [...new Set(adapter.modules.map((m) => m.module))];
  if (adapter.modules.every((m) => m.a.kind === "dense")) return { method: "lora", rank: first.rank, alpha: first.alpha, seed: 0, targets };
  const seeds = new Set(adapter.modules.map((m) => (m.a.kind === "seeded" ? m.a.seed : -1)));
  const [seed] = seeds;
  if (seeds.size !== 1 || seed === undefined || seed < 0)
    throw new TrainError("loss: needs one seeded A (LoRI) or a stored A in every module (LoRA)");
  return { method: "lori-d", rank: first.rank, alpha: first.alpha, seed, targets };
}
