import { createHash } from "node:crypto";
import path from "node:path";
import type { Llama, LlamaModel } from "node-llama-cpp";
import type { GgufFile } from "../../gguf/gguf-types.js";
import type { Adapter } from "../../lora/adapter.js";
import { mergeCat } from "../../lora/merge.js";
import { MERGEABLE_WEIGHT_TYPES, writeMergedModel } from "../../lora/merged-model.js";
import { architectureLayout, baseTensorName } from "../../lora/architectures.js";
import type { TargetModule } from "../../lora/target-modules.js";
import type { Logger } from "../../util/logger.js";
import type { ResolvedAdapterSet } from "../adapters/adapter-set-compiler.js";
import type { AdapterRegistry } from "../adapters/adapter-registry.js";
import type { CompiledCache } from "../adapters/compiled-cache.js";
import { BASE_BINDING } from "./lane-binding.js";
import { LaneScheduler, type LaneEvents, type LaneSchedulerOptions } from "./lane-scheduler.js";
import { SetTraffic, type DominanceRule } from "./set-traffic.js";

/**
 * Merged-weight lanes (off unless --merged-lanes-mb > 0; docs/merged-lanes.md). When one adapter set dominates
 * a model's traffic (set-traffic.ts), its merged model (base with the set folded into the weights,
 * lora/merged-model.ts) is written into the compiled-adapter cache in the background, loaded as a second
 * llama.cpp model with one lane of its own, and that set's new requests go there while it has a free
 * sequence: decoding then costs what the base costs, with no LoRA matmuls. Requests keep the lane they
 * started on. A lane is unloaded when its set cools, or to make room for a hotter set within the budget,
 * once its last request has finished.
 *
 * Budget: the merged models' file sizes (their weights; llama.cpp maps or loads the whole file) count against
 * `budgetBytes`; each merged lane's context (KV cache of --parallel sequences) comes on top, like any lane.
 * Only F32/F16 bases qualify: a quantized base keeps the LoRA path (see merged-model.ts).
 */

export interface MergedLanesOptions extends DominanceRule {
  readonly budgetBytes: number;
}

export interface MergedLanesDeps {
  readonly llama: Llama;
  readonly basePath: string;
  readonly baseHeader: GgufFile;
  /** First 16 hex digits of the base fingerprint: the cache subdirectory of this base's compiled files. */
  readonly cacheDir: string;
  readonly registry: AdapterRegistry;
  readonly cache: CompiledCache;
  /** The base model's lane options; a merged model gets one lane with the same sequences and context. */
  readonly laneOptions: LaneSchedulerOptions;
  readonly gpuLayers: "auto" | "max" | number;
  readonly laneEvents: LaneEvents;
  readonly logger: Logger;
  /** For logs and metrics. */
  readonly modelId: string;
}

type MergedLaneState = "building" | "ready" | "retiring";

interface MergedLane {
  readonly key: string;
  readonly label: string;
  state: MergedLaneState;
  /** Bytes counted against the budget (the base's file size until the merged file exists). */
  bytes: number;
  model?: LlamaModel;
  scheduler?: LaneScheduler;
  /** Unpins the merged file in the compiled cache. */
  release?: () => void;
  requests: number;
}

/** What a request routed to a merged lane runs on. */
export interface MergedRoute {
  readonly scheduler: LaneScheduler;
  readonly model: LlamaModel;
}

export interface MergedLaneView {
  readonly label: string;
  readonly state: MergedLaneState;
  readonly bytes: number;
  /** Requests routed to it since it was loaded. */
  readonly requests: number;
}

/** A set that failed to build or load is not tried again for this long (a broken adapter must not spin). */
const RETRY_AFTER_MS = 60_000;
/** How often a retiring lane checks whether its last request has finished. */
const RETIRE_POLL_MS = 50;

export class MergedLanes {
  private readonly traffic: SetTraffic;
  private readonly lanes = new Map<string, MergedLane>();
  private readonly retryAt = new Map<string, number>();
  /** Sets already logged as not fitting the budget (logged once until they fit or cool). */
  private readonly overBudgetLogged = new Set<string>();
  private readonly baseBytes: number;
  private disposed = false;
  /** Aborted at dispose: a merged model being written stops at its next block. */
  private readonly stopping = new AbortController();
  private readonly work = new Set<Promise<void>>();

  private constructor(
    private readonly deps: MergedLanesDeps,
    private readonly options: MergedLanesOptions,
  ) {
    this.traffic = new SetTraffic(options);
    const last = deps.baseHeader.tensors.reduce((end, t) => Math.max(end, t.offset + t.byteLength), deps.baseHeader.dataOffset);
    this.baseBytes = last;
  }

  /**
   * Merged lanes for a model, or undefined with the reason logged when its weights cannot be merged (a
   * quantized base, an architecture without adapters).
   */
  static create(deps: MergedLanesDeps, options: MergedLanesOptions): MergedLanes | undefined {
    const reason = unmergeableReason(deps.baseHeader);
    if (reason !== undefined) {
      deps.logger.warn("merged_lanes_off", { model: deps.modelId, reason });
      return undefined;
    }
    return new MergedLanes(deps, options);
  }

  /** Counts an admitted request; may start building a hot set's lane or retire a cooled one (in the background). */
  record(set: ResolvedAdapterSet): void {
    if (this.disposed) return;
    this.traffic.record(set.key);
    for (const lane of this.lanes.values()) {
      if (lane.state === "ready" && this.traffic.hasCooled(lane.key)) this.retire(lane, "cooled");
    }
    for (const key of this.overBudgetLogged) if (this.traffic.hasCooled(key)) this.overBudgetLogged.delete(key);
    if (set.key === "" || this.lanes.has(set.key) || !this.traffic.isHot(set.key)) return;
    if ((this.retryAt.get(set.key) ?? 0) > Date.now()) return;
    if (!this.makeRoom(set)) return;
    this.track(this.build(set));
  }

  /** The merged lane of `set` when it is loaded and has a free sequence; else undefined (the LoRA path). */
  route(set: ResolvedAdapterSet): MergedRoute | undefined {
    const lane = this.lanes.get(set.key);
    if (lane?.state !== "ready" || !lane.scheduler || !lane.model) return undefined;
    const stats = lane.scheduler.stats;
    if (stats.busySequences + stats.queued >= this.deps.laneOptions.sequences) return undefined;
    lane.requests++;
    return { scheduler: lane.scheduler, model: lane.model };
  }

  /** Every lane loaded, being built or retiring, for /metrics and tests. */
  get views(): MergedLaneView[] {
    return [...this.lanes.values()].map((l) => ({ label: l.label, state: l.state, bytes: l.bytes, requests: l.requests }));
  }

  get budgetBytes(): number {
    return this.options.budgetBytes;
  }

  /** Sequences generating on merged lanes (a drain waits for them like for any other). */
  get busySequences(): number {
    let busy = 0;
    for (const lane of this.lanes.values()) busy += lane.scheduler?.stats.busySequences ?? 0;
    return busy;
  }

  /** Settles when no build, load or retirement is under way (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.work.size > 0) await Promise.allSettled([...this.work]);
  }

  /** Frees every merged lane (waiting builds are abandoned); idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return this.settled();
    this.disposed = true;
    this.stopping.abort();
    await this.settled();
    for (const lane of [...this.lanes.values()]) await this.free(lane);
  }

  private get usedBytes(): number {
    let total = 0;
    for (const lane of this.lanes.values()) total += lane.bytes;
    return total;
  }

  /**
   * Whether a lane for `set` fits the budget, retiring ready lanes of sets that are no longer hot to make
   * room (their memory counts until their last request has finished and they are freed).
   */
  private makeRoom(set: ResolvedAdapterSet): boolean {
    const needed = this.baseBytes;
    if (needed > this.options.budgetBytes) return this.overBudget(set, "the merged model alone exceeds --merged-lanes-mb");
    // The merged file lives in the compiled cache: one larger than its whole budget would evict every LoRA file.
    if (needed > this.deps.cache.budgetBytes) return this.overBudget(set, "the merged model exceeds --compiled-cache-mb");
    if (this.usedBytes + needed <= this.options.budgetBytes) return true;
    const candidates = [...this.lanes.values()]
      .filter((l) => l.state === "ready" && !this.traffic.isHot(l.key))
      .sort((a, b) => this.traffic.count(a.key) - this.traffic.count(b.key));
    let freed = 0;
    for (const lane of candidates) {
      if (this.usedBytes - freed + needed <= this.options.budgetBytes) break;
      freed += lane.bytes;
      this.retire(lane, "budget");
    }
    // The retired lanes still hold their memory: the hot set is built at a later request, once they are freed.
    return this.overBudget(set, this.lanes.size > 0 ? "waiting for other merged lanes to be freed" : "over budget");
  }

  private overBudget(set: ResolvedAdapterSet, reason: string): false {
    if (!this.overBudgetLogged.has(set.key)) {
      this.overBudgetLogged.add(set.key);
      this.deps.logger.info("merged_lane_skipped", {
        model: this.deps.modelId,
        adapter_set: set.label,
        reason,
        needed_bytes: this.baseBytes,
        used_bytes: this.usedBytes,
        budget_bytes: this.options.budgetBytes,
      });
    }
    return false;
  }

  private track(work: Promise<void>): void {
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
  }

  private filePath(set: ResolvedAdapterSet): string {
    const digest = createHash("sha256").update(set.key).digest("hex");
    return path.join(this.deps.cache.root, this.deps.cacheDir, `merged-${digest}.gguf`);
  }

  private async build(set: ResolvedAdapterSet): Promise<void> {
    const lane: MergedLane = { key: set.key, label: set.label, state: "building", bytes: this.baseBytes, requests: 0 };
    this.lanes.set(set.key, lane);
    const { logger, modelId } = this.deps;
    logger.info("merged_lane_building", { model: modelId, adapter_set: set.label, share: this.traffic.share(set.key) });
    const started = performance.now();
    try {
      const filePath = this.filePath(set);
      const hashes = set.members.map((m) => m.entry.hash);
      lane.release = await this.deps.cache.ensure(filePath, hashes, async (out) => {
        const single = set.members.length === 1 ? set.members[0]! : undefined;
        const adapter: Adapter = single
          ? await this.deps.registry.snapshot(single.entry)
          : mergeCat(
              await Promise.all(
                set.members.map(async ({ entry, weight }) => ({
                  adapter: await this.deps.registry.snapshot(entry),
                  weight,
                  name: entry.name,
                })),
              ),
            );
        await writeMergedModel(adapter, this.deps.basePath, this.deps.baseHeader, out, {
          weight: single?.weight ?? 1,
          name: set.label,
          signal: this.stopping.signal,
        });
      });
      const builtMs = performance.now() - started;
      if (this.disposed) throw new Error("the server is shutting down");
      const model = await this.deps.llama.loadModel({ modelPath: filePath, gpuLayers: this.deps.gpuLayers });
      lane.model = model;
      const scheduler = LaneScheduler.forModel(model, { ...this.deps.laneOptions, maxLanes: 1 }, this.deps.laneEvents);
      lane.scheduler = scheduler;
      await scheduler.start(BASE_BINDING);
      if (this.disposed) throw new Error("the server is shutting down");
      lane.state = "ready";
      this.overBudgetLogged.delete(set.key);
      logger.info("merged_lane_ready", {
        model: modelId,
        adapter_set: set.label,
        bytes: lane.bytes,
        build_ms: Math.round(builtMs),
        load_ms: Math.round(performance.now() - started - builtMs),
      });
    } catch (error) {
      this.retryAt.set(set.key, Date.now() + RETRY_AFTER_MS);
      await this.free(lane);
      if (!this.disposed) logger.warn("merged_lane_failed", { model: modelId, adapter_set: set.label, error: (error as Error).message });
    }
  }

  /** Takes no new requests from now on; frees the lane once its last request has finished. */
  private retire(lane: MergedLane, reason: "cooled" | "budget"): void {
    if (lane.state !== "ready") return;
    lane.state = "retiring";
    this.deps.logger.info("merged_lane_retiring", {
      model: this.deps.modelId,
      adapter_set: lane.label,
      reason,
      share: this.traffic.share(lane.key),
    });
    this.track(
      (async () => {
        // Only `route` hands this scheduler out, and it no longer does: the count can only fall.
        while (!this.disposed && lane.scheduler && (lane.scheduler.stats.busySequences > 0 || lane.scheduler.stats.queued > 0)) {
          await new Promise((resolve) => setTimeout(resolve, RETIRE_POLL_MS));
        }
        await this.free(lane);
        this.deps.logger.info("merged_lane_unloaded", { model: this.deps.modelId, adapter_set: lane.label, reason });
      })(),
    );
  }

  private async free(lane: MergedLane): Promise<void> {
    if (this.lanes.get(lane.key) === lane) this.lanes.delete(lane.key);
    const { scheduler, model, release } = lane;
    lane.scheduler = undefined;
    lane.model = undefined;
    lane.release = undefined;
    try {
      await scheduler?.dispose();
      await model?.dispose();
    } finally {
      release?.();
    }
  }
}

/** Why no adapter could be folded into this base's weights, or undefined when every adaptable weight is F32/F16. */
function unmergeableReason(header: GgufFile): string | undefined {
  const architecture = header.metadata.get("general.architecture")?.value;
  let layout: ReturnType<typeof architectureLayout>;
  try {
    layout = architectureLayout(String(architecture));
  } catch (error) {
    return (error as Error).message;
  }
  const tensors = new Map(header.tensors.map((t) => [t.name, t]));
  const blockCount = Number(header.metadata.get(`${layout.architecture}.block_count`)?.value ?? 0);
  for (let layer = 0; layer < blockCount; layer++) {
    for (const module of Object.keys(layout.modules) as TargetModule[]) {
      const info = tensors.get(baseTensorName(layout, layer, module));
      if (info && !(MERGEABLE_WEIGHT_TYPES as readonly string[]).includes(info.type)) {
        return `${info.name} is ${info.type}: merged lanes need F32 or F16 weights (a quantized base keeps the LoRA path)`;
      }
    }
  }
  return undefined;
}
