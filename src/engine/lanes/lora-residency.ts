import { statSync } from "node:fs";
import type { LaneBinding } from "./lane-binding.js";

export interface ResidencyEvents {
  onAdapterLoaded?(filePath: string): void;
  onAdapterEvicted?(filePath: string): void;
  onAdapterEvictionFailed?(filePath: string, error: Error): void;
}

/**
 * Reference counts of adapter files by the lanes bound to them. node-llama-cpp keeps every adapter it ever
 * loaded until the model is freed; we free the least recently used unreferenced ones beyond `maxResident`,
 * and never one that a lane still has set (that would be a use-after-free inside llama.cpp).
 */
export class LoraResidency {
  private readonly references = new Map<string, number>();
  /** Loaded, unreferenced files in least-recently-released order. */
  private readonly unreferenced: string[] = [];
  /** Loaded files and their sizes. */
  private readonly loaded = new Map<string, number>();

  /** Evictions run one after another; this chain never rejects (failures are reported, not thrown). */
  private evicting: Promise<void> = Promise.resolve();

  constructor(
    /** Frees a loaded file that no context has set any more. */
    private readonly unload: (filePath: string) => Promise<void>,
    private readonly maxResident: number,
    private readonly events: ResidencyEvents = {},
  ) {}

  get residentCount(): number {
    return this.loaded.size;
  }

  get residentBytes(): number {
    let bytes = 0;
    for (const size of this.loaded.values()) bytes += size;
    return bytes;
  }

  /** Whether a lane is bound to this file now (the compiled cache never deletes such a file). */
  isRetained(filePath: string): boolean {
    return this.references.has(filePath);
  }

  /** Marks the binding's files as in use (they are loaded by the lane that applies them). */
  retain(binding: LaneBinding): void {
    for (const { filePath } of binding.loras) {
      this.references.set(filePath, (this.references.get(filePath) ?? 0) + 1);
      const index = this.unreferenced.indexOf(filePath);
      if (index !== -1) this.unreferenced.splice(index, 1);
      if (!this.loaded.has(filePath)) {
        this.loaded.set(filePath, fileSize(filePath));
        this.events.onAdapterLoaded?.(filePath);
      }
    }
  }

  release(binding: LaneBinding): void {
    for (const { filePath } of binding.loras) {
      const count = (this.references.get(filePath) ?? 1) - 1;
      if (count > 0) {
        this.references.set(filePath, count);
        continue;
      }
      this.references.delete(filePath);
      this.unreferenced.push(filePath);
    }
    // evict() catches unload failures; only a throwing event handler could reject here.
    this.evicting = this.evicting.then(() => this.evict()).catch(() => undefined);
  }

  /** Resolves once the evictions asked for so far are done (tests, shutdown). */
  settled(): Promise<void> {
    return this.evicting;
  }

  private async evict(): Promise<void> {
    while (this.loaded.size > this.maxResident && this.unreferenced.length > 0) {
      const filePath = this.unreferenced.shift()!;
      this.loaded.delete(filePath);
      try {
        await this.unload(filePath);
        this.events.onAdapterEvicted?.(filePath);
      } catch (error) {
        this.events.onAdapterEvictionFailed?.(filePath, error as Error);
      }
    }
  }
}

function fileSize(filePath: string): number {
  try {
    return statSync(filePath).size;
  } catch {
    return 0;
  }
}
