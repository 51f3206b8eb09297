import { randomBytes } from "node:crypto";
import { lstat, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { Adapter } from "../../lora/adapter.js";
import type { AdapterConfig } from "../../lora/adapter-config.js";
import {
  type AdapterSnapshot,
  CONFIG_FILE,
  parseAdapterBytes,
  readAdapterSnapshot,
  validateAdapterName,
  WEIGHTS_FILE,
} from "../../lora/adapter-io.js";
import { LoraError } from "../../lora/errors.js";
import type { Logger } from "../../util/logger.js";
import { validateAdapterDir, type AdapterBase, type ValidatedAdapter } from "./adapter-validation.js";
import { sweepAbandonedStaging } from "./staging-sweep.js";

/** One adapter directory as last validated: parsed config plus the content hash of exactly the bytes validated. */
export interface AdapterEntry {
  readonly name: string;
  readonly dir: string;
  /** sha256 over adapter_config.json then adapter_model.safetensors: a changed adapter changes this. */
  readonly hash: string;
  readonly config: AdapterConfig;
  readonly bytes: number;
  readonly updatedAt: number;
  /** mtimes+sizes+inodes (of the directory entries themselves, never a symlink's target) to notice changes cheaply. */
  readonly stamp: string;
  /** sha256 fingerprints of the served bases this adapter fits (empty when the registry knows no bases). */
  readonly bases: readonly string[];
}

export type RegistryChange = {
  kind: "added" | "updated" | "removed";
  name: string;
  /** The content hash now (absent after removal) and before (absent when added). */
  hash?: string;
  previousHash?: string;
};

/** The adapter's content changed on disk after the registry validated it: refresh and resolve again. */
export class AdapterChangedError extends Error {
  /** Retry later: by then the registry has the new version (or knows it is gone). */
  readonly kind = "unavailable" as const;
  constructor(readonly adapter: string) {
    super(`The adapter '${adapter}' changed while it was being loaded.`);
    this.name = "AdapterChangedError";
  }
}

export interface AdapterRegistryOptions {
  /** The served bases every adapter must fit (set later with `setBases` when models load after the registry). */
  readonly bases?: readonly AdapterBase[];
  /** Upper bound on adapter_model.safetensors (tests lower it). */
  readonly maxWeightsBytes?: number;
}

/**
 * The adapters found in `--adapters-dir`, kept current by polling (portable, and it also sees files edited
 * in place, which directory watchers miss), plus directories registered by path. An adapter is listed only
 * after `validateAdapterDir` accepted it (regular files, no symlinks, finite values, fits a served base);
 * anything else is skipped with one warning per change. Scans, installs and removals run one at a time, so
 * an install is never undone by a scan that started before it, and no single adapter can stall a scan:
 * every read is of a bounded regular file.
 */
export class AdapterRegistry {
  private readonly entries = new Map<string, AdapterEntry>();
  private readonly extra = new Map<string, string>();
  private readonly warned = new Map<string, string>();
  /** Directories refused only because they fit none of the served models (for the start-up summary). */
  private readonly unfitNames = new Set<string>();
  private readonly listeners: Array<(change: RegistryChange) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queuedScan: Promise<void> | undefined;
  private closed = false;
  private bases: readonly AdapterBase[] | undefined;

  constructor(
    readonly dir: string,
    private readonly logger: Logger,
    private readonly options: AdapterRegistryOptions = {},
  ) {
    this.bases = options.bases;
  }

  /** The served bases; adapters are (re)validated against them on the next scan. */
  setBases(bases: readonly AdapterBase[]): void {
    this.bases = bases;
    for (const [name, entry] of this.entries) this.entries.set(name, { ...entry, stamp: "" });
  }

  /** Removes what writers killed mid-write left behind, scans once, then every `pollMs` (0 = never). */
  async start(pollMs: number): Promise<void> {
    const swept = await sweepAbandonedStaging(this.dir);
    if (swept.length > 0) this.logger.info("adapter_staging_swept", { directories: swept.length });
    await this.refresh();
    if (pollMs > 0 && !this.closed) {
      this.timer = setInterval(() => {
        this.refresh().catch((error: unknown) => this.logger.warn("adapter_scan_failed", { message: (error as Error).message }));
      }, pollMs);
      this.timer.unref();
    }
  }

  onChange(listener: (change: RegistryChange) => void): void {
    this.listeners.push(listener);
  }

  get(name: string): AdapterEntry | undefined {
    return this.entries.get(name);
  }

  list(): AdapterEntry[] {
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Names of adapter directories refused because they fit none of the served models, sorted. */
  unfit(): string[] {
    return [...this.unfitNames].sort();
  }

  /** True when some listed adapter has this content hash (aliases share one). */
  hasHash(hash: string): boolean {
    for (const entry of this.entries.values()) if (entry.hash === hash) return true;
    return false;
  }

  /** Validates a directory exactly as the poller would (for staging dirs before they become visible). */
  validate(dir: string, name: string): Promise<ValidatedAdapter> {
    return validateAdapterDir(dir, name, this.validationOptions());
  }

  /** Registers a directory outside the adapters dir under a name (it is watched like the others). */
  registerPath(name: string, dir: string): Promise<AdapterEntry> {
    validateAdapterName(name);
    return this.exclusive(async () => {
      const entry = await this.load(name, dir);
      this.extra.set(name, dir);
      this.apply(name, entry);
      return entry;
    });
  }

  /**
   * Moves a fully written staging directory (inside the adapters dir, a dot-name the poller ignores) into the
   * store as `name`, after validating it; on any failure the staging directory is removed and nothing changes.
   */
  install(name: string, stagingDir: string): Promise<AdapterEntry> {
    validateAdapterName(name);
    return this.exclusive(async () => {
      try {
        const validated = await this.validate(stagingDir, name);
        const target = path.join(this.dir, name);
        if (
          await lstat(target).then(
            () => true,
            () => false,
          )
        ) {
          throw new LoraError(
            "ADAPTER_EXISTS",
            `a directory named '${name}' already exists in the adapters dir (it may have failed validation)`,
          );
        }
        await rename(stagingDir, target);
        const stamp = (await fileStamp(target)) ?? "";
        const entry = toEntry(name, target, validated, stamp);
        this.apply(name, entry);
        this.warned.delete(name);
        return entry;
      } catch (error) {
        await rm(stagingDir, { recursive: true, force: true });
        throw error;
      }
    });
  }

  /** Removes an adapter: a stored one is moved aside then deleted; one registered by path is only forgotten. */
  remove(name: string): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.entries.get(name);
      if (this.extra.has(name)) {
        this.extra.delete(name);
      } else if (entry) {
        // Move aside first so nobody ever sees a half-deleted directory.
        const trash = path.join(this.dir, `.deleted-${name}-${randomBytes(4).toString("hex")}`);
        await rename(entry.dir, trash);
        await rm(trash, { recursive: true, force: true });
      }
      this.apply(name, undefined);
    });
  }

  /** Forgets an adapter registered by path (directories under the adapters dir are removed by `remove`). */
  unregisterPath(name: string): void {
    this.extra.delete(name);
  }

  /**
   * The adapter parsed from the very bytes the entry's hash names: the files are read once, hashed, and parsed
   * from that buffer. Throws AdapterChangedError when the bytes on disk no longer hash to `entry.hash`.
   */
  async snapshot(entry: AdapterEntry): Promise<Adapter> {
    let snapshot: AdapterSnapshot;
    try {
      snapshot = await readAdapterSnapshot(entry.dir, this.readOptions());
    } catch {
      throw new AdapterChangedError(entry.name);
    }
    if (snapshot.hash !== entry.hash) throw new AdapterChangedError(entry.name);
    return parseAdapterBytes(snapshot.configBytes, snapshot.weightsBytes, entry.name);
  }

  /**
   * The adapter as it is now: like `snapshot`, but when the files changed since the last scan it rescans
   * and reads the new version (a few times at most). Undefined when the adapter is gone or no longer valid.
   */
  async readCurrent(name: string): Promise<{ entry: AdapterEntry; adapter: Adapter } | undefined> {
    for (let attempt = 1; ; attempt++) {
      const entry = this.entries.get(name);
      if (!entry) return undefined;
      try {
        return { entry, adapter: await this.snapshot(entry) };
      } catch (error) {
        if (!(error instanceof AdapterChangedError) || attempt >= 3) throw error;
        await this.refresh();
      }
    }
  }

  /** Rescans after whatever is running now; callers arriving before that scan starts share it. */
  refresh(): Promise<void> {
    if (this.queuedScan) return this.queuedScan;
    const scan = this.exclusive(async () => {
      this.queuedScan = undefined;
      await this.scan();
    });
    this.queuedScan = scan;
    return scan;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.chain.then(task);
    this.chain = result.catch(() => undefined);
    return result;
  }

  private validationOptions() {
    return {
      ...(this.bases ? { bases: this.bases } : {}),
      ...(this.options.maxWeightsBytes !== undefined ? { maxWeightsBytes: this.options.maxWeightsBytes } : {}),
    };
  }

  private readOptions() {
    return {
      followSymlinks: false,
      ...(this.options.maxWeightsBytes !== undefined ? { maxWeightsBytes: this.options.maxWeightsBytes } : {}),
    };
  }

  private async scan(): Promise<void> {
    if (this.closed) return;
    const found = new Map<string, string>(this.extra);
    const names = await readdir(this.dir, { withFileTypes: true }).catch(() => []);
    for (const dirent of names) {
      // Symlinked directories are not directories here (readdir does not follow them): never listed.
      if (!dirent.isDirectory() || dirent.name.startsWith(".")) continue;
      try {
        validateAdapterName(dirent.name);
      } catch {
        continue;
      }
      found.set(dirent.name, path.join(this.dir, dirent.name));
    }
    for (const name of [...this.entries.keys()]) if (!found.has(name)) this.apply(name, undefined);
    for (const name of [...this.unfitNames]) if (!found.has(name)) this.unfitNames.delete(name);
    for (const [name, dir] of found) {
      if (this.closed) return;
      const current = this.entries.get(name);
      const stamp = await fileStamp(dir);
      if (stamp === null) {
        this.unfitNames.delete(name);
        this.warnOnce(name, "missing", `adapter '${name}' is incomplete (needs ${CONFIG_FILE} and ${WEIGHTS_FILE}); skipped`);
        this.apply(name, undefined);
        continue;
      }
      if (current && current.stamp === stamp && current.dir === dir) continue;
      try {
        this.apply(name, await this.load(name, dir, stamp));
        this.warned.delete(name);
        this.unfitNames.delete(name);
      } catch (error) {
        if (error instanceof LoraError && error.code === "ADAPTER_NO_BASE") this.unfitNames.add(name);
        else this.unfitNames.delete(name);
        this.warnOnce(name, stamp, `adapter '${name}' skipped: ${(error as Error).message}`);
        this.apply(name, undefined);
      }
    }
  }

  private async load(name: string, dir: string, knownStamp?: string): Promise<AdapterEntry> {
    // The stamp is taken before reading: a change during the read shows as a new stamp on the next scan.
    const stamp = knownStamp ?? (await fileStamp(dir));
    if (stamp === null) throw new LoraError("ADAPTER_MISSING_FILE", `adapter '${name}' needs ${CONFIG_FILE} and ${WEIGHTS_FILE}`);
    return toEntry(name, dir, await this.validate(dir, name), stamp);
  }

  private apply(name: string, entry: AdapterEntry | undefined): void {
    const previous = this.entries.get(name);
    if (!entry) {
      if (!previous) return;
      this.entries.delete(name);
      this.emit({ kind: "removed", name, previousHash: previous.hash });
      return;
    }
    this.entries.set(name, entry);
    if (previous?.hash === entry.hash) return;
    this.emit(
      previous ? { kind: "updated", name, hash: entry.hash, previousHash: previous.hash } : { kind: "added", name, hash: entry.hash },
    );
  }

  private emit(change: RegistryChange): void {
    this.logger.info("adapter_registry", { change: change.kind, adapter: change.name, hash: change.hash });
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.logger.warn("adapter_listener_failed", { message: (error as Error).message });
      }
    }
  }

  private warnOnce(name: string, key: string, message: string): void {
    if (this.warned.get(name) === key) return;
    this.warned.set(name, key);
    this.logger.warn("adapter_skipped", { adapter: name, message });
  }
}

function toEntry(name: string, dir: string, validated: ValidatedAdapter, stamp: string): AdapterEntry {
  const { snapshot } = validated;
  return {
    name,
    dir,
    hash: snapshot.hash,
    config: validated.config,
    bytes: snapshot.configBytes.length + snapshot.weightsBytes.length,
    updatedAt: Date.now(),
    stamp,
    bases: validated.bases,
  };
}

/** lstat, not stat: a symlink's own times, so a symlink to /dev/zero is stamped (and refused) once, never read. */
async function fileStamp(dir: string): Promise<string | null> {
  try {
    const [config, weights] = await Promise.all([lstat(path.join(dir, CONFIG_FILE)), lstat(path.join(dir, WEIGHTS_FILE))]);
    return `${config.mtimeMs}:${config.size}:${weights.mtimeMs}:${weights.size}:${config.ino}:${weights.ino}`;
  } catch {
    return null;
  }
}
