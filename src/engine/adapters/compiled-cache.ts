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
 *   before each compile (for it and every compile under way). Nothing is deleted while a lane holds it
 *   (`inUse`), while a request handed it may still wait for a lane (250 ms after its last hand-out once no
 *   request waits, `graceMs` at most), or at all while any request waits for a lane (`waiting`): a queued
 *   request's file must still be there when its lane loads it (bench/soak.ts showed "Failed to initialize
 *   LoRA adapter" 500s otherwise). Under sustained queueing the cache can therefore exceed the budget until
 *   the next quiet moment (logged once per episode).
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
  /** A file handed out is protected until a lane holds it, or this many ms at most (default 60 s). */
  readonly graceMs?: number;
  /** Whether any request waits for a lane (queued or promised one): handed-out files may still be needed. */
  readonly waiting?: () => boolean;
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
/** A handed-out file is free this long after its last hand-out once no request waits for a lane. */
const HANDOFF_MS = 250;
const WATCH_MS = 100;

export class CompiledCache {
  private readonly manifest = new Map<string, ManifestEntry>();
  private readonly verified = new Set<string>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Files handed out by `ensure` that no lane was seen holding yet, with the time they were handed out. */
  private readonly handedOut = new Map<string, number>();
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
  private inUse: (filePath: string) => boolean;

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

  /** Connects the "does a lane hold this file" question (the lanes are created after the cache). */
  setInUse(inUse: (filePath: string) => boolean): void {
    this.inUse = inUse;
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
  async ensure(filePath: string, adapters: readonly string[], build: (filePath: string) => Promise<void>): Promise<void> {
    await this.load();
    const key = this.keyOf(filePath);
    const known = this.manifest.get(key);
    // A lane stays bound to its last set until another request makes it swap, and that request calls ensure
    // first: sweeping here sees nearly every handed-out file held by its lane, ending its hand-off protection.
    this.sweepHandedOut();
    this.handedOut.set(key, Date.now());
    this.watch();
    if (known && this.verified.has(key)) {
      known.lastUsed = Date.now();
      return;
    }
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.prepare(key, filePath, adapters, build).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    await pending;
  }

  /** Deletes every compiled file made from the adapter content `hash` (deferred for files in use). */
  async pruneAdapter(hash: string): Promise<void> {
    await this.load();
    let changed = false;
    for (const [key, entry] of [...this.manifest]) {
      if (!entry.adapters.includes(hash)) continue;
      // Still needed by a lane, a compile, or a request waiting for a lane: deleted once free.
      if (this.isBusy(key) || this.someoneWaits()) {
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
    // Make room first, for this file and every other compile under way (each as large as the largest so far),
    // so that the directory, temp files included, stays within the budget.
    this.building++;
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

  private isBusy(key: string): boolean {
    return this.inFlight.has(key) || this.handedOut.has(key) || this.inUse(this.pathOf(key));
  }

  /** Some request waits for a lane: it may need any file handed out before (deletions wait for a quiet moment). */
  private someoneWaits(): boolean {
    return this.options.waiting?.() ?? false;
  }

  /** Ends the hand-off protection once no request can be waiting with the file, or after `graceMs`. */
  private sweepHandedOut(keep?: string): void {
    const graceMs = this.options.graceMs ?? 60_000;
    const now = Date.now();
    const nobodyWaits = this.options.waiting ? !this.options.waiting() : false;
    for (const [key, at] of [...this.handedOut]) {
      if (key === keep) continue;
      const age = now - at;
      // Not ended by a lane holding the file: another request handed the same file may still be queued, and
      // the lane may swap away first. A request takes microseconds from being handed its file to the queue.
      if (age >= graceMs || (nobodyWaits && age >= HANDOFF_MS)) this.handedOut.delete(key);
    }
  }

  /** While files are protected or doomed, checks a few times a second whether they are free now. */
  private watch(): void {
    if (this.timer || (this.handedOut.size === 0 && this.doomed.size === 0)) return;
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
    this.sweepHandedOut();
    let changed = false;
    for (const key of [...this.doomed]) {
      if (!this.manifest.has(key)) this.doomed.delete(key);
      else if (!this.isBusy(key) && !this.someoneWaits()) {
        await this.deleteFile(key);
        changed = true;
      }
    }
    if (changed) await this.saveManifest();
    if (this.handedOut.size === 0 && this.doomed.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Stops the watch timer (it never keeps the process alive; this is for tidiness). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Deletes doomed files that are free, then LRU files until the total plus `reserve` fits the budget. */
  private async enforceBudget(keep: string, reserve = 0): Promise<void> {
    this.sweepHandedOut(keep);
    for (const key of [...this.doomed]) {
      if (!this.manifest.has(key)) this.doomed.delete(key);
      else if (!this.isBusy(key) && !this.someoneWaits()) await this.deleteFile(key);
    }
    const target = Math.max(0, this.options.budgetBytes - reserve);
    let total = this.bytes;
    if (total <= target) {
      this.overBudget = false;
      return;
    }
    if (this.someoneWaits()) return; // until a quiet moment: a waiting request may need any file
    const candidates = [...this.manifest]
      .filter(([key]) => key !== keep && !this.handedOut.has(key) && !this.inFlight.has(key))
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [key, entry] of candidates) {
      if (total <= target) break;
      // Another pass (a concurrent compile) may have deleted it meanwhile.
      if (!this.manifest.has(key) || this.inUse(this.pathOf(key))) continue;
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
        waiting_for_a_lane: this.handedOut.size,
      });
    }
    this.overBudget = total > this.options.budgetBytes;
  }

  private async deleteFile(key: string): Promise<void> {
    this.manifest.delete(key);
    this.handedOut.delete(key);
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
