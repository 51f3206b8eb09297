import { createHash } from "node:crypto";
import { mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { openRegularFile, readRegularFile } from "../../lora/regular-file.js";
import { writeFileAtomically } from "../../util/atomic-file.js";
import type { Logger } from "../../util/logger.js";
import { silentLogger } from "../../util/logger.js";
import type { AdapterRegistry, RegistryChange } from "./adapter-registry.js";

/**
 * `<adapters-dir>/.compiled/`: GGUF LoRA files compiled from adapters and adapter sets, content-addressed (a
 * file's name is a hash of what it was compiled from), under a disk budget.
 *
 * - Budget: least-recently-used files are deleted until the total fits `budgetBytes`, and room is made
 *   before each compile (for it and every compile under way). Nothing is deleted while it is pinned or a
 *   lane holds it (`inUse`). `ensure` pins the file it hands out until the caller releases it: a request
 *   keeps its pin from compile to the end of its generation, so its file is still there when its lane loads
 *   it however long it queued (bench/soak.ts showed "Failed to initialize LoRA adapter" 500s when files of
 *   queued requests could be deleted). The cache exceeds the budget only when every file is pinned or held
 *   (logged once per episode), and returns under it when they are released.
 * - Pruning: when the registry replaces or deletes an adapter, every file compiled from its old content is
 *   deleted at once (deferred while in use), unless another listed adapter still has that content.
 * - Integrity: `manifest.json` (written atomically) records each file's size and sha256. The first use of a
 *   file after a start re-hashes it; a truncated or altered file is deleted and recompiled, never served.
 *   Files the manifest does not know (a crash between compile and manifest write, older versions) are deleted
 *   at start: they cannot be verified.
 */

export interface CompiledCacheOptions {
  /** Disk budget for all compiled files, in bytes. */
  readonly budgetBytes: number;
  /** Whether a lane holds this file (never evicted then). */
  readonly inUse?: (filePath: string) => boolean;
  readonly logger?: Logger;
}

interface ManifestEntry {
  bytes: number;
  sha256: string;
  lastUsed: number;
  /** Content hashes of the adapters compiled into the file. */
  adapters: string[];
}

const MANIFEST = "manifest.json";
const MANIFEST_VERSION = 1;
/** A compiled file is at most a few times its adapter; this only stops a runaway read. */
const MAX_COMPILED_BYTES = 64 * 1024 * 1024 * 1024;

export const DEFAULT_COMPILED_CACHE_MB = 1024;
const WATCH_MS = 100;
/** How long a compile waits for pinned files to be released before it goes over the budget. */
const ROOM_WAIT_MS = 30_000;
const ROOM_POLL_MS = 20;

export class CompiledCache {
  private readonly manifest = new Map<string, ManifestEntry>();
  private readonly verified = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Pins per file: handed out by `ensure` and not released yet. */
  private readonly pins = new Map<string, number>();
  /** Files of replaced/deleted adapters that were in use when pruned: deleted once free. */
  private readonly doomed = new Set<string>();
  private loading: Promise<void> | undefined;
  private saving: Promise<void> = Promise.resolve();
  private evictionCount = 0;
  /** The largest compiled file so far: the room made before compiling the next one. */
  private largestFile = 0;
  /** Compiles under way (their temp files are on disk but not in the manifest yet). */
  private building = 0;
  private timer: NodeJS.Timeout | undefined;
  private tidying: Promise<void> | undefined;
  private overBudget = false;
  private readonly inUse: (filePath: string) => boolean;

  constructor(
    readonly root: string,
    private readonly options: CompiledCacheOptions,
  ) {
    this.inUse = options.inUse ?? (() => false);
  }

  /** Reads the manifest and drops unverifiable files now (otherwise done on first use). */
  open(): Promise<void> {
    return this.load();
  }

  /** Bytes of all compiled files the cache knows. */
  get bytes(): number {
    let total = 0;
    for (const entry of this.manifest.values()) total += entry.bytes;
    return total;
  }

  get files(): number {
    return this.manifest.size;
  }

  /** Files deleted to stay within the budget (not counting prunes of replaced adapters). */
  get evictions(): number {
    return this.evictionCount;
  }

  get budgetBytes(): number {
    return this.options.budgetBytes;
  }

  /** Prunes compiled files of adapters the registry replaced or removed. */
  followRegistry(registry: AdapterRegistry): void {
    registry.onChange((change: RegistryChange) => {
      const old = change.previousHash;
      if (old === undefined || registry.hasHash(old)) return;
      this.pruneAdapter(old).catch((error: unknown) =>
        this.logger.warn("compiled_cache_prune_failed", { message: (error as Error).message }),
      );
    });
  }

  /**
   * Makes sure `filePath` (inside the cache) holds a verified compiled file: reuses a verified one, re-verifies
   * one from before this start (recompiling it when its size or hash is off), or compiles it with `build`,
   * which must write `filePath` atomically. `adapters`: the content hashes it is compiled from.
   */
  async ensure(filePath: string, adapters: readonly string[], build: (filePath: string) => Promise<void>): Promise<() => void> {
    await this.load();
    const key = this.keyOf(filePath);
    // Pinned before any await: no budget pass of a concurrent compile may delete it from here on.
    const release = this.pin(key);
    try {
      const known = this.manifest.get(key);
      if (known && this.verified.has(key)) {
        known.lastUsed = Date.now();
        return release;
      }
      let pending = this.inFlight.get(key);
      if (!pending) {
        pending = this.prepare(key, filePath, adapters, build).finally(() => this.inFlight.delete(key));
        this.inFlight.set(key, pending);
      }
      await pending;
      return release;
    } catch (error) {
      release();
      throw error;
    }
  }

  /** Files pinned right now (handed out and not released). */
  get pinnedFiles(): number {
    return this.pins.size;
  }

  private pin(key: string): () => void {
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const count = (this.pins.get(key) ?? 1) - 1;
      if (count > 0) this.pins.set(key, count);
      else this.pins.delete(key);
      // Doomed or over-budget files may be free now: check soon, off this call's stack.
      if (count <= 0 && (this.doomed.size > 0 || this.overBudget)) this.watch();
    };
  }

  /** Deletes every compiled file made from the adapter content `hash` (deferred for files in use). */
  async pruneAdapter(hash: string): Promise<void> {
    await this.load();
    let changed = false;
    for (const [key, entry] of [...this.manifest]) {
      if (!entry.adapters.includes(hash)) continue;
      // Still needed by a lane, a compile or a request: deleted once free.
      if (this.isBusy(key)) {
        this.doomed.add(key);
        this.watch();
        continue;
      }
      await this.deleteFile(key);
      changed = true;
    }
    if (changed) await this.saveManifest();
  }

  private get logger(): Logger {
    return this.options.logger ?? silentLogger;
  }

  private keyOf(filePath: string): string {
    const key = path.relative(this.root, filePath);
    if (key.startsWith("..") || path.isAbsolute(key)) throw new Error(`compiled file outside the cache: ${filePath}`);
    return key.split(path.sep).join("/");
  }

  private pathOf(key: string): string {
    return path.join(this.root, ...key.split("/"));
  }

  private async prepare(
    key: string,
    filePath: string,
    adapters: readonly string[],
    build: (filePath: string) => Promise<void>,
  ): Promise<void> {
    const known = this.manifest.get(key);
    if (known) {
      const actual = await fileDigest(filePath).catch(() => null);
      if (actual && actual.bytes === known.bytes && actual.sha256 === known.sha256) {
        this.verified.add(key);
        known.lastUsed = Date.now();
        return;
      }
      this.logger.warn("compiled_cache_corrupt", {
        file: key,
        reason: actual ? "size or sha256 differ from the manifest" : "missing or unreadable",
      });
      await this.deleteFile(key);
    }
    await mkdir(path.dirname(filePath), { recursive: true });
    // Claims a compile slot (this.building) once there is room for it.
    await this.waitForRoom();
    // Make room first, for this file and every other compile under way (each as large as the largest so far),
    // so that the directory, temp files included, stays within the budget.
    try {
      await this.enforceBudget(key, this.largestFile * this.building);
      await build(filePath);
    } finally {
      this.building--;
    }
    const digest = await fileDigest(filePath);
    this.manifest.set(key, { ...digest, lastUsed: Date.now(), adapters: [...adapters] });
    this.largestFile = Math.max(this.largestFile, digest.bytes);
    this.verified.add(key);
    await this.enforceBudget(key);
    await this.saveManifest();
  }

  /**
   * Backpressure: while the files other requests have pinned (or lanes hold), plus this compile and those
   * under way, would not fit the budget, a new compile waits for a release, up to ROOM_WAIT_MS; after that it
   * proceeds over budget (logged) rather than fail a request. Many concurrent requests for many distinct sets
   * thus queue for disk instead of growing `.compiled/` past its budget.
   */
  private async waitForRoom(): Promise<void> {
    const deadline = Date.now() + ROOM_WAIT_MS;
    const needed = () => this.busyBytes() + this.largestFile * (this.building + 1);
    while (needed() > this.options.budgetBytes && (this.pins.size > 1 || this.building > 0)) {
      if (Date.now() >= deadline) {
        this.logger.warn("compiled_cache_wait_timeout", { budget_bytes: this.options.budgetBytes, busy_bytes: this.busyBytes() });
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, ROOM_POLL_MS));
    }
    // Claimed in the same tick as the check, so waiters released together do not all overshoot.
    this.building++;
  }

  /** Bytes of files that cannot be deleted now (pinned, held by a lane, being verified). */
  private busyBytes(): number {
    let total = 0;
    for (const [key, entry] of this.manifest) if (this.isBusy(key)) total += entry.bytes;
    return total;
  }

  private isBusy(key: string): boolean {
    return this.inFlight.has(key) || this.pins.has(key) || this.inUse(this.pathOf(key));
  }

  /** While files are doomed or the cache is over budget, checks a few times a second whether files are free. */
  private watch(): void {
    if (this.timer || (this.doomed.size === 0 && !this.overBudget)) return;
    this.timer = setInterval(() => {
      if (this.tidying) return;
      this.tidying = this.tidy()
        .catch((error: unknown) => this.logger.warn("compiled_cache_tidy_failed", { message: (error as Error).message }))
        .finally(() => {
          this.tidying = undefined;
        });
    }, WATCH_MS);
    this.timer.unref();
  }

  private async tidy(): Promise<void> {
    const before = this.manifest.size;
    if (this.overBudget) await this.enforceBudget(null);
    else await this.deleteFreeDoomed();
    if (this.manifest.size !== before) await this.saveManifest();
    if (this.doomed.size === 0 && !this.overBudget && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Stops the watch timer (it never keeps the process alive; this is for tidiness). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async deleteFreeDoomed(): Promise<void> {
    for (const key of [...this.doomed]) {
      if (!this.manifest.has(key)) this.doomed.delete(key);
      else if (!this.isBusy(key)) await this.deleteFile(key);
    }
  }

  /** Deletes doomed files that are free, then LRU files until the total plus `reserve` fits the budget. */
  private async enforceBudget(keep: string | null, reserve = 0): Promise<void> {
    await this.deleteFreeDoomed();
    const target = Math.max(0, this.options.budgetBytes - reserve);
    let total = this.bytes;
    if (total <= target) {
      this.overBudget = false;
      return;
    }
    const candidates = [...this.manifest].filter(([key]) => key !== keep).sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [key, entry] of candidates) {
      if (total <= target) break;
      // Checked now, not when listed: a concurrent pass may have deleted it, or a request pinned it, meanwhile.
      if (!this.manifest.has(key) || this.isBusy(key)) continue;
      await this.deleteFile(key);
      this.evictionCount++;
      total -= entry.bytes;
    }
    if (total > this.options.budgetBytes && !this.overBudget) {
      // Once per episode: everything left is held by a lane or waiting for one.
      this.logger.warn("compiled_cache_over_budget", {
        bytes: total,
        budget_bytes: this.options.budgetBytes,
        files: this.manifest.size,
        held_by_lanes: [...this.manifest.keys()].filter((k) => this.inUse(this.pathOf(k))).length,
        pinned_by_requests: this.pins.size,
      });
    }
    this.overBudget = total > this.options.budgetBytes;
    if (this.overBudget) this.watch();
  }

  private async deleteFile(key: string): Promise<void> {
    this.manifest.delete(key);
    this.verified.delete(key);
    this.doomed.delete(key);
    await rm(this.pathOf(key), { force: true });
  }

  /** Reads the manifest once; deletes files it does not list (unverifiable) and forgets entries without a file. */
  private load(): Promise<void> {
    this.loading ??= (async () => {
      await mkdir(this.root, { recursive: true });
      try {
        const bytes = await readRegularFile(path.join(this.root, MANIFEST), { maxBytes: 64 * 1024 * 1024 });
        const parsed = JSON.parse(bytes.toString("utf8")) as { version?: unknown; files?: Record<string, ManifestEntry> };
        if (parsed.version === MANIFEST_VERSION && parsed.files && typeof parsed.files === "object") {
          for (const [key, entry] of Object.entries(parsed.files)) {
            if (!isManifestEntry(entry) || key.split("/").includes("..")) continue;
            this.manifest.set(key, entry);
            this.largestFile = Math.max(this.largestFile, entry.bytes);
          }
        }
      } catch {
        // No manifest (first start) or an unreadable one: every file on disk is unverifiable, so it goes.
      }
      const onDisk = new Set<string>();
      for (const dirent of await readdir(this.root, { withFileTypes: true })) {
        if (!dirent.isDirectory()) {
          if (dirent.name !== MANIFEST) await rm(path.join(this.root, dirent.name), { force: true, recursive: true });
          continue;
        }
        for (const file of await readdir(path.join(this.root, dirent.name), { withFileTypes: true })) {
          const key = `${dirent.name}/${file.name}`;
          if (file.isFile() && this.manifest.has(key)) onDisk.add(key);
          else await rm(path.join(this.root, dirent.name, file.name), { force: true, recursive: true });
        }
      }
      for (const key of [...this.manifest.keys()]) if (!onDisk.has(key)) this.manifest.delete(key);
      await this.enforceBudget("");
      await this.saveManifest();
    })();
    return this.loading;
  }

  private saveManifest(): Promise<void> {
    const write = async () => {
      const files = Object.fromEntries([...this.manifest].sort(([a], [b]) => (a < b ? -1 : 1)));
      const text = `${JSON.stringify({ version: MANIFEST_VERSION, files }, null, 1)}\n`;
      await writeFileAtomically(path.join(this.root, MANIFEST), async (fh) => {
        await fh.writeFile(text);
      });
    };
    this.saving = this.saving.then(write, write);
    return this.saving;
  }
}

function isManifestEntry(value: unknown): value is ManifestEntry {
  const v = value as ManifestEntry;
  return (
    typeof v === "object" &&
    v !== null &&
    Number.isSafeInteger(v.bytes) &&
    typeof v.sha256 === "string" &&
    typeof v.lastUsed === "number" &&
    Array.isArray(v.adapters) &&
    v.adapters.every((a) => typeof a === "string")
  );
}

/** Size and sha256 of a compiled file, read as a bounded regular file through one descriptor. */
async function fileDigest(filePath: string): Promise<{ bytes: number; sha256: string }> {
  const { handle, size } = await openRegularFile(filePath, { maxBytes: MAX_COMPILED_BYTES });
  try {
    const hash = createHash("sha256");
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    let position = 0;
    while (position < size) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, size - position), position);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
      position += bytesRead;
    }
    return { bytes: position, sha256: hash.digest("hex") };
  } finally {
    await handle.close();
  }
}
