import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { statSync } from "node:fs";
import { unloadLora } from "../node-llama-internals.js";
import type { LaneBinding } from "./lane-binding.js";

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

  constructor(
    private readonly model: LlamaModel,
    private readonly contexts: () => readonly LlamaContext[],
    private readonly maxResident: number,
    private readonly events: { onAdapterLoaded?(filePath: string): void; onAdapterEvicted?(filePath: string): void } = {},
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
    void this.evict();
  }

  private async evict(): Promise<void> {
    while (this.loaded.size > this.maxResident && this.unreferenced.length > 0) {
      const filePath = this.unreferenced.shift()!;
      this.loaded.delete(filePath);
      await unloadLora(this.model, this.contexts(), filePath);
      this.events.onAdapterEvicted?.(filePath);
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
