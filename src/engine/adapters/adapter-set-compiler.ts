import { createHash } from "node:crypto";
import path from "node:path";
import type { GgufFile } from "../../gguf/gguf-types.js";
import { KindedError } from "../../errors/error-kinds.js";
import type { Adapter } from "../../lora/adapter.js";
import type { BaseFingerprint } from "../../lora/base-fingerprint.js";
import { doraIsNotALoraError, isDoraAdapter } from "../../lora/dora.js";
import { compileGgufLora } from "../../lora/gguf-lora.js";
import { mergeCat } from "../../lora/merge.js";
import { BASE_BINDING, type LaneBinding } from "../lanes/lane-binding.js";
import { AdapterIncompatibleError, AdapterNotFoundError } from "./adapter-errors.js";
import { AdapterChangedError, type AdapterEntry, type AdapterRegistry } from "./adapter-registry.js";
import { CompiledCache, DEFAULT_COMPILED_CACHE_MB } from "./compiled-cache.js";

export interface AdapterChoice {
  readonly name: string;
  readonly weight: number;
}

/** A lane binding whose compiled file stays on disk until `release()` is called. */
export interface PinnedBinding {
  readonly binding: LaneBinding;
  release(): void;
}

export interface ResolvedAdapterSet {
  readonly members: ReadonlyArray<{ readonly entry: AdapterEntry; readonly weight: number }>;
  readonly key: string;
  readonly label: string;
}

/**
 * How often bind re-resolves a set whose adapters changed on disk while it was compiling, and the pause
 * before each retry: a replace by plain copy (`cp`) is not atomic, and takes a moment to finish.
 */
const CHANGED_RETRIES = 8;
const CHANGED_RETRY_PAUSE_MS = 50;

/**
 * Turns a requested adapter set into a lane binding: one GGUF LoRA file per set, compiled from our adapter
 * format into a content-addressed cache (file name = hash of the members' content and weights, so a changed
 * adapter never reuses a stale file) and validated in TypeScript before llama.cpp sees it. A single adapter
 * is compiled once and applied with its weight as scale; several are cat-merged into one adapter with the
 * weights folded in (one concatenated adapter decodes faster than stacking them on a context).
 *
 * The cache key is the registry's hash, so the compiler compiles exactly the bytes that hash names: it reads
 * each adapter once into memory, checks the sha256 against the entry, and parses that buffer. When the files
 * changed meanwhile, the registry is refreshed and the set resolved again, so a concurrent replace can never
 * store one version's tensors under the other's name.
 */
export class AdapterSetCompiler {
  private readonly cache: CompiledCache;

  constructor(
    private readonly registry: AdapterRegistry,
    private readonly baseHeader: GgufFile,
    private readonly baseFingerprint: BaseFingerprint,
    cacheRoot: string,
    cache?: CompiledCache,
  ) {
    this.cache = cache ?? new CompiledCache(cacheRoot, { budgetBytes: DEFAULT_COMPILED_CACHE_MB * 1024 * 1024 });
  }

  private get cacheDir(): string {
    return path.join(this.cache.root, this.baseFingerprint.sha256.slice(0, 16));
  }

  /** Looks the names up now (404/400 before any work starts); order does not matter. */
  resolve(choices: readonly AdapterChoice[]): ResolvedAdapterSet {
    if (choices.length === 0) return { members: [], key: "", label: "" };
    const members = [...choices]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map(({ name, weight }) => {
        const entry = this.registry.get(name);
        if (!entry) throw new AdapterNotFoundError(name);
        this.checkBase(entry);
        return { entry, weight };
      });
    const key = members.map((m) => `${m.entry.name}@${m.entry.hash}*${m.weight}`).join("+");
    const label = members.map((m) => (m.weight === 1 ? m.entry.name : `${m.entry.name}*${m.weight}`)).join("+");
    return { members, key, label };
  }

  /**
   * The lane binding of a set, its compiled file pinned in the cache until `release()` (idempotent): the
   * caller keeps it until its lane has loaded the file and its work is done.
   */
  async bind(set: ResolvedAdapterSet): Promise<PinnedBinding> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bindOnce(set);
      } catch (error) {
        if (!(error instanceof AdapterChangedError)) throw error;
        if (attempt >= CHANGED_RETRIES) {
          throw new KindedError("unavailable", `The adapter '${error.adapter}' is being replaced; retry.`, "adapter_changing", "adapter");
        }
        await new Promise((resolve) => setTimeout(resolve, CHANGED_RETRY_PAUSE_MS * attempt));
        await this.registry.refresh();
        set = this.resolve(set.members.map(({ entry, weight }) => ({ name: entry.name, weight })));
      }
    }
  }

  private async bindOnce(set: ResolvedAdapterSet): Promise<PinnedBinding> {
    if (set.members.length === 0) return { binding: BASE_BINDING, release: () => undefined };
    const hashes = set.members.map((m) => m.entry.hash);
    if (set.members.length === 1) {
      const { entry, weight } = set.members[0]!;
      const filePath = path.join(this.cacheDir, `${entry.hash}.gguf`);
      const release = await this.ensureCompiled(filePath, hashes, set, () => this.registry.snapshot(entry));
      return { binding: { key: set.key, label: set.label, loras: [{ filePath, scale: weight }] }, release };
    }
    const digest = createHash("sha256").update(set.key).digest("hex");
    const filePath = path.join(this.cacheDir, `set-${digest}.gguf`);
    const release = await this.ensureCompiled(filePath, hashes, set, async () => {
      const inputs = [];
      for (const { entry, weight } of set.members) inputs.push({ adapter: await this.registry.snapshot(entry), weight, name: entry.name });
      return mergeCat(inputs);
    });
    return { binding: { key: set.key, label: set.label, loras: [{ filePath, scale: 1 }] }, release };
  }

  private checkBase(entry: AdapterEntry): void {
    if (entry.bases.length > 0) {
      if (!entry.bases.includes(this.baseFingerprint.sha256)) {
        throw new AdapterIncompatibleError(entry.name, "its shapes or base fingerprint do not fit this model");
      }
      return;
    }
    const fingerprint = entry.config.lori?.base_fingerprint;
    if (!fingerprint) return;
    if (fingerprint.architecture !== this.baseFingerprint.architecture) {
      throw new AdapterIncompatibleError(
        entry.name,
        `built for architecture '${fingerprint.architecture}', the model is '${this.baseFingerprint.architecture}'`,
      );
    }
    if (fingerprint.sha256 !== this.baseFingerprint.sha256) {
      throw new AdapterIncompatibleError(entry.name, "built for a different base model (tensor names or shapes differ)");
    }
  }

  private async ensureCompiled(
    filePath: string,
    hashes: readonly string[],
    set: ResolvedAdapterSet,
    build: () => Promise<Adapter>,
  ): Promise<() => void> {
    return this.cache.ensure(filePath, hashes, async (outPath) => {
      const adapter = await build().catch((error: unknown) => {
        if (error instanceof AdapterChangedError) throw error;
        throw new AdapterIncompatibleError(set.label, (error as Error).message);
      });
      // DoRA is no LoRA: the refusal names the adapter and the merged-model export to use instead.
      if (isDoraAdapter(adapter)) throw new AdapterIncompatibleError(set.label, doraIsNotALoraError(set.label).message);
      // compileGgufLora re-reads and validates the header it wrote (what llama.cpp would abort on); later
      // uses rely on the cache's size + sha256 check that the file is still exactly that one.
      await compileGgufLora(adapter, this.baseHeader, outPath).catch((error: unknown) => {
        throw new AdapterIncompatibleError(set.label, (error as Error).message);
      });
    });
  }
}
