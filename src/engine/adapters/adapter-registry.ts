import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parseAdapterConfig, type AdapterConfig } from "../../lora/adapter-config.js";
import { CONFIG_FILE, validateAdapterName, WEIGHTS_FILE } from "../../lora/adapter-io.js";
import type { Logger } from "../../util/logger.js";

/** One adapter directory as last seen: parsed config plus a content hash of both files. */
export interface AdapterEntry {
  readonly name: string;
  readonly dir: string;
  /** sha256 over adapter_config.json and adapter_model.safetensors: a changed adapter changes this. */
  readonly hash: string;
  readonly config: AdapterConfig;
  readonly bytes: number;
  readonly updatedAt: number;
  /** mtimes+sizes used to notice changes cheaply between scans. */
  readonly stamp: string;
}

export type RegistryChange = { kind: "added" | "updated" | "removed"; name: string };

/**
 * The adapters found in `--adapters-dir`, kept current by polling (portable, and it also sees files edited
 * in place, which directory watchers miss). Directories whose names are not valid adapter names, or whose
 * files are unreadable, are skipped with one warning per change.
 */
export class AdapterRegistry {
  private readonly entries = new Map<string, AdapterEntry>();
  private readonly extra = new Map<string, string>();
  private readonly warned = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private readonly listeners: Array<(change: RegistryChange) => void> = [];

  constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Scans once, then every `pollMs` (0 = never). */
  async start(pollMs: number): Promise<void> {
    await this.refresh();
    if (pollMs > 0) {
      this.timer = setInterval(() => void this.refresh(), pollMs);
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

  /** Registers a directory outside the adapters dir under a name (it is watched like the others). */
  async registerPath(name: string, dir: string): Promise<AdapterEntry> {
    validateAdapterName(name);
    const entry = await this.load(name, dir);
    this.extra.set(name, dir);
    this.apply(name, entry);
    return entry;
  }

  /** Forgets an adapter registered by path (directories under the adapters dir are removed by the caller). */
  unregisterPath(name: string): void {
    this.extra.delete(name);
  }

  /** Rescans now; concurrent callers share one scan. */
  refresh(): Promise<void> {
    this.scanning ??= this.scan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async scan(): Promise<void> {
    const found = new Map<string, string>(this.extra);
    const names = await readdir(this.dir, { withFileTypes: true }).catch(() => []);
    for (const dirent of names) {
      if (!dirent.isDirectory() || dirent.name.startsWith(".")) continue;
      try {
        validateAdapterName(dirent.name);
      } catch {
        continue;
      }
      found.set(dirent.name, path.join(this.dir, dirent.name));
    }
    for (const name of [...this.entries.keys()]) if (!found.has(name)) this.apply(name, undefined);
    for (const [name, dir] of found) {
      const current = this.entries.get(name);
      const stamp = await fileStamp(dir);
      if (stamp === null) {
        this.warnOnce(name, "missing", `adapter '${name}' is incomplete (needs ${CONFIG_FILE} and ${WEIGHTS_FILE}); skipped`);
        this.apply(name, undefined);
        continue;
      }
      if (current && current.stamp === stamp && current.dir === dir) continue;
      try {
        this.apply(name, await this.load(name, dir));
        this.warned.delete(name);
      } catch (error) {
        this.warnOnce(name, stamp, `adapter '${name}' skipped: ${(error as Error).message}`);
        this.apply(name, undefined);
      }
    }
  }

  private async load(name: string, dir: string): Promise<AdapterEntry> {
    const stamp = await fileStamp(dir);
    if (stamp === null) throw new Error(`${dir} needs ${CONFIG_FILE} and ${WEIGHTS_FILE}`);
    const configBytes = await readFile(path.join(dir, CONFIG_FILE));
    const config = parseAdapterConfig(JSON.parse(configBytes.toString("utf8")), path.join(dir, CONFIG_FILE));
    const hash = createHash("sha256").update(configBytes);
    let bytes = configBytes.length;
    for await (const chunk of createReadStream(path.join(dir, WEIGHTS_FILE))) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { name, dir, hash: hash.digest("hex"), config, bytes, updatedAt: Date.now(), stamp };
  }

  private apply(name: string, entry: AdapterEntry | undefined): void {
    const previous = this.entries.get(name);
    if (!entry) {
      if (!previous) return;
      this.entries.delete(name);
      this.emit({ kind: "removed", name });
      return;
    }
    if (previous?.hash === entry.hash) {
      this.entries.set(name, entry);
      return;
    }
    this.entries.set(name, entry);
    this.emit({ kind: previous ? "updated" : "added", name });
  }

  private emit(change: RegistryChange): void {
    this.logger.info("adapter_registry", { change: change.kind, adapter: change.name, hash: this.entries.get(change.name)?.hash });
    for (const listener of this.listeners) listener(change);
  }

  private warnOnce(name: string, key: string, message: string): void {
    if (this.warned.get(name) === key) return;
    this.warned.set(name, key);
    this.logger.warn("adapter_skipped", { adapter: name, message });
  }
}

async function fileStamp(dir: string): Promise<string | null> {
  try {
    const [config, weights] = await Promise.all([stat(path.join(dir, CONFIG_FILE)), stat(path.join(dir, WEIGHTS_FILE))]);
    return `${config.mtimeMs}:${config.size}:${weights.mtimeMs}:${weights.size}:${config.ino}:${weights.ino}`;
  } catch {
    return null;
  }
}
