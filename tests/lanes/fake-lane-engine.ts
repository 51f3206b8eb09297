import type { Token } from "node-llama-cpp";
import type { LaneBinding } from "../../src/engine/lanes/lane-binding.js";
import type { LaneContext, LaneEngine, LaneSequence } from "../../src/engine/lanes/lane-context.js";
import type { LoraApplication } from "../../src/engine/node-llama-internals.js";

/**
 * The lane scheduler's only fake (allowed for its unit tests): contexts whose open and adapter swap are
 * operations the test settles by hand, in any order, so every interleaving runs in milliseconds. It records
 * the rules a real context would punish as `violations`: clearing or swapping a context while one of its
 * sequences is in use (tests mark leased sequences `inUse`), and any use after dispose.
 */
export class Operation<T = void> {
  private settle!: { resolve: (value: T) => void; reject: (error: Error) => void };
  done = false;
  readonly promise: Promise<T>;

  constructor(readonly what: string) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }

  finish(value: T): void {
    if (this.done) throw new Error(`${this.what} settled twice`);
    this.done = true;
    this.settle.resolve(value);
  }

  fail(error: Error): void {
    if (this.done) throw new Error(`${this.what} settled twice`);
    this.done = true;
    this.settle.reject(error);
  }
}

export class FakeSequence implements LaneSequence {
  contextTokens: Token[] = [];
  /** Set by the test while it holds a lease on this sequence. */
  inUse = false;
  constructor(readonly context: FakeContext) {}

  async clearHistory(): Promise<void> {
    this.context.assertAlive("clearHistory");
    if (this.inUse) this.context.engine.violations.push("clearHistory on a sequence in use");
    this.contextTokens = [];
  }
}

export class FakeContext implements LaneContext<FakeSequence> {
  readonly contextSize = 256;
  readonly sequences: FakeSequence[];
  loras: readonly LoraApplication[];
  disposed = false;
  readonly swaps: Array<Operation & { loras: readonly LoraApplication[] }> = [];

  constructor(
    readonly engine: FakeLaneEngine,
    readonly binding: LaneBinding,
    size: number,
  ) {
    this.sequences = Array.from({ length: size }, () => new FakeSequence(this));
    this.loras = binding.loras;
  }

  assertAlive(operation: string): void {
    if (this.disposed) {
      this.engine.violations.push(`${operation} on a disposed context`);
      throw new Error(`${operation} on a disposed context`);
    }
  }

  async setLoras(loras: readonly LoraApplication[]): Promise<void> {
    this.assertAlive("setLoras");
    if (this.sequences.some((s) => s.inUse)) this.engine.violations.push("setLoras while a sequence is in use");
    const operation = Object.assign(new Operation(`setLoras on ${this.binding.label}`), { loras });
    this.swaps.push(operation);
    this.engine.pendingSwaps.push(operation);
    if (this.engine.autoSettle) operation.finish();
    await operation.promise;
    this.loras = loras;
  }

  async dispose(): Promise<void> {
    if (this.disposed) this.engine.violations.push("context disposed twice");
    this.disposed = true;
    this.engine.disposedContexts++;
  }
}

export interface PendingOpen extends Operation<void> {
  readonly binding: LaneBinding;
  readonly context: FakeContext;
}

export class FakeLaneEngine implements LaneEngine<FakeSequence> {
  /** Settle opens and swaps at once (for scenarios that are not about their timing). */
  autoSettle = false;
  readonly opens: PendingOpen[] = [];
  readonly pendingSwaps: Array<Operation & { loras: readonly LoraApplication[] }> = [];
  readonly unloaded: string[] = [];
  readonly contexts: FakeContext[] = [];
  readonly violations: string[] = [];
  disposedContexts = 0;

  constructor(readonly sequences: number) {}

  async openContext(binding: LaneBinding): Promise<FakeContext> {
    const context = new FakeContext(this, binding, this.sequences);
    this.contexts.push(context);
    const open = Object.assign(new Operation(`open ${binding.label}`), { binding, context });
    this.opens.push(open);
    if (this.autoSettle) open.finish();
    await open.promise;
    return context;
  }

  /** Makes every unload fail with this error. */
  unloadError: Error | undefined;

  async unloadAdapter(filePath: string): Promise<void> {
    if (this.unloadError) throw this.unloadError;
    const holder = this.contexts.find((c) => !c.disposed && c.loras.some((l) => l.filePath === filePath));
    if (holder) this.violations.push(`unloaded ${filePath} while a live context has it set`);
    this.unloaded.push(filePath);
  }

  /** Opens not yet settled. */
  get openPending(): PendingOpen[] {
    return this.opens.filter((o) => !o.done);
  }

  /** Settles every pending open successfully. */
  finishOpens(): void {
    for (const open of this.openPending) open.finish();
  }
}

export function binding(name: string): LaneBinding {
  return name === ""
    ? { key: "", label: "", loras: [] }
    : { key: name, label: name, loras: [{ filePath: `/adapters/${name}.gguf`, scale: 1 }] };
}

/** Lets every settled promise's continuations run (opens, swaps and the scheduler's reactions to them). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
