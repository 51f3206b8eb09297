import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { GgufFile } from "../../gguf/gguf-types.js";
import { readAdapterDir } from "../../lora/adapter-io.js";
import type { BaseFingerprint } from "../../lora/base-fingerprint.js";
import { compileGgufLora } from "../../lora/gguf-lora.js";
import { validateGgufLora } from "../../lora/gguf-lora-validate.js";
import { mergeCat } from "../../lora/merge.js";
import { BASE_BINDING, type LaneBinding } from "../lanes/lane-binding.js";
import { AdapterIncompatibleError, AdapterNotFoundError } from "./adapter-errors.js";
import type { AdapterEntry, AdapterRegistry } from "./adapter-registry.js";

export interface AdapterChoice {
  readonly name: string;
  readonly weight: number;
}

export interface ResolvedAdapterSet {
  readonly members: ReadonlyArray<{ readonly entry: AdapterEntry; readonly weight: number }>;
  readonly key: string;
  readonly label: string;
}

/**
 * Turns a requested adapter set into a lane binding: one GGUF LoRA file per set, compiled from our adapter
 * format into a content-addressed cache (file name = hash of the members' content and weights, so a changed
 * adapter never reuses a stale file) and validated in TypeScript before llama.cpp sees it. A single adapter
 * is compiled once and applied with its weight as scale; several are cat-merged into one adapter with the
 * weights folded in (one concatenated adapter decodes faster than stacking them on a context).
 */
export class AdapterSetCompiler {
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly validated = new Set<string>();

  constructor(
    private readonly registry: AdapterRegistry,
    private readonly baseHeader: GgufFile,
    private readonly baseFingerprint: BaseFingerprint,
    private readonly cacheRoot: string,
  ) {}

  private get cacheDir(): string {
    return path.join(this.cacheRoot, this.baseFingerprint.sha256.slice(0, 16));
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

  async bind(set: ResolvedAdapterSet): Promise<LaneBinding> {
    if (set.members.length === 0) return BASE_BINDING;
    if (set.members.length === 1) {
      const { entry, weight } = set.members[0]!;
      const filePath = path.join(this.cacheDir, `${entry.hash}.gguf`);
      await this.ensureCompiled(filePath, set, async () => readAdapterDir(entry.dir));
      return { key: set.key, label: set.label, loras: [{ filePath, scale: weight }] };
    }
    const digest = createHash("sha256").update(set.key).digest("hex");
    const filePath = path.join(this.cacheDir, `set-${digest}.gguf`);
    await this.ensureCompiled(filePath, set, async () => {
      const inputs = await Promise.all(
        set.members.map(async ({ entry, weight }) => ({ adapter: await readAdapterDir(entry.dir), weight, name: entry.name })),
      );
      return mergeCat(inputs);
    });
    return { key: set.key, label: set.label, loras: [{ filePath, scale: 1 }] };
  }

  private checkBase(entry: AdapterEntry): void {
    const fingerprint = entry.config.lori?.base_fingerprint;
    if (!fingerprint) return;
    if (fingerprint.architecture !== this.baseFingerprint.architecture) {
      throw new AdapterIncompatibleError(entry.name, `built for architecture '${fingerprint.architecture}', the model is '${this.baseFingerprint.architecture}'`);
    }
    if (fingerprint.sha256 !== this.baseFingerprint.sha256) {
      throw new AdapterIncompatibleError(entry.name, "built for a different base model (tensor names or shapes differ)");
    }
  }

  private async ensureCompiled(filePath: string, set: ResolvedAdapterSet, build: () => Promise<Parameters<typeof compileGgufLora>[0]>): Promise<void> {
    if (this.validated.has(filePath)) return;
    let pending = this.inFlight.get(filePath);
    if (!pending) {
      pending = (async () => {
        if (existsSync(filePath)) {
          await validateGgufLora(filePath, this.baseHeader);
        } else {
          await mkdir(this.cacheDir, { recursive: true });
          const adapter = await build().catch((error: unknown) => {
            throw new AdapterIncompatibleError(set.label, (error as Error).message);
          });
          await compileGgufLora(adapter, this.baseHeader, filePath).catch((error: unknown) => {
            throw new AdapterIncompatibleError(set.label, (error as Error).message);
          });
        }
        this.validated.add(filePath);
      })().finally(() => this.inFlight.delete(filePath));
      this.inFlight.set(filePath, pending);
    }
    await pending;
  }
}
