/**
 * bench/merge: cat-merge 4 adapters of Llama-3-8B shapes (32 layers x 7 projections, r = 32) and print one JSON
 * object: seconds, peak RSS and bytes processed per second.
 *
 * Inputs are synthetic LoRI-D adapters generated in memory (not timed): seeded A (one seed per adapter, the
 * normal case: different tasks get different seeds), dense random F32 B. A cat merge of adapters with different
 * seeds must materialise every A (Philox per element) and stack them, so the result has a dense rank-128 A.
 * Also measured: the shared-seed case (all four adapters on one seed: B = sum c_i B_i, rank stays 32), and
 * writing the merged adapter (F16) to a temp directory outside the repo.
 *
 * Env: BENCH_LAYERS (default 32), BENCH_RANK (32), BENCH_ADAPTERS (4), BENCH_WRITE (1; 0 skips the write).
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeAdapter, materializeA, type Adapter, type LoraModule } from "../src/lora/adapter.js";
import { WEIGHTS_FILE, writeAdapterDir } from "../src/lora/adapter-io.js";
import { mergeCat } from "../src/lora/merge.js";
import { LLAMA3_8B_SHAPES, TARGET_MODULES } from "../src/lora/target-modules.js";

const LAYERS = Number(process.env.BENCH_LAYERS ?? 32);
const RANK = Number(process.env.BENCH_RANK ?? 32);
const ADAPTERS = Number(process.env.BENCH_ADAPTERS ?? 4);
const WRITE = (process.env.BENCH_WRITE ?? "1") !== "0";

/** xorshift32 fill in [-0.01, 0.01): fast, deterministic test data. */
function randomB(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 0.02;
  }
  return out;
}

function syntheticAdapter(index: number, seed: number): Adapter {
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < LAYERS; layer++) {
    for (const module of TARGET_MODULES) {
      const [outFeatures, inFeatures] = LLAMA3_8B_SHAPES[module];
      const b = randomB(outFeatures * RANK, 1 + index * 1_000_003 + layer * 7 + modules.length);
      modules.push({ layer, module, rank: RANK, alpha: 2 * RANK, inFeatures, outFeatures, a: { kind: "seeded", seed }, b });
    }
  }
  return makeAdapter(modules, { variant: "lori-d" });
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024); // maxRSS is in KiB
const seconds = (start: number) => Math.round((performance.now() - start) / 10) / 100;

function moduleBytes(modules: readonly LoraModule[]): { a: number; b: number } {
  let a = 0;
  let b = 0;
  for (const m of modules) {
    a += m.rank * m.inFeatures * 4;
    b += m.b.length * 4;
  }
  return { a, b };
}

async function main(): Promise<void> {
  const generateStart = performance.now();
  const inputs = Array.from({ length: ADAPTERS }, (_, i) => ({ adapter: syntheticAdapter(i, 1000 + i), weight: 0.3, name: `task${i}` }));
  const generateSeconds = seconds(generateStart);
  const rssAfterGenerate = peakRssMiB();
  const inputBytes = inputs.reduce((n, i) => {
    const { a, b } = moduleBytes(i.adapter.modules);
    return n + a + b; // A counted as the float32 values the merge materialises
  }, 0);

  // What dominates: regenerating seeded A (Philox per element) — timed alone for the first adapter.
  const seededStart = performance.now();
  for (const m of inputs[0]!.adapter.modules) materializeA(m);
  const seededASecondsPerAdapter = seconds(seededStart);

  const mergeStart = performance.now();
  const merged = mergeCat(inputs);
  const mergeSeconds = seconds(mergeStart);
  const out = moduleBytes(merged.modules);
  const outputBytes = out.a + out.b;

  let write: Record<string, number> | null = null;
  if (WRITE) {
    const dir = await mkdtemp(join(tmpdir(), "lori-bench-merge-"));
    try {
      const writeStart = performance.now();
      await writeAdapterDir(join(dir, "merged"), merged, { dtype: "F16" });
      const writeSeconds = seconds(writeStart);
      const { size } = await stat(join(dir, "merged", WEIGHTS_FILE));
      write = { seconds: writeSeconds, fileMiB: mib(size), mibPerSecond: Math.round(mib(size) / writeSeconds) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  // Shared seed: the LoRI fast path (no A materialised, no rank growth).
  const shared = inputs.map((input) => ({
    ...input,
    adapter: { ...input.adapter, modules: input.adapter.modules.map((m) => ({ ...m, a: { kind: "seeded" as const, seed: 7 } })) },
  }));
  const sharedStart = performance.now();
  const collapsed = mergeCat(shared);
  const sharedSeconds = seconds(sharedStart);
  const sharedBytes = ADAPTERS * moduleBytes(shared[0]!.adapter.modules).b + moduleBytes(collapsed.modules).b;

  console.log(
    JSON.stringify(
      {
        shape: `Llama-3-8B projections: ${LAYERS} layers x 7 modules, r=${RANK}, ${ADAPTERS} adapters`,
        inputs: "in-memory LoRI-D: seeded A (a different seed per adapter, materialised by the merge), dense random F32 B",
        generateSeconds,
        rssAfterGenerateMiB: rssAfterGenerate,
        cat: {
          seconds: mergeSeconds,
          outputRank: merged.modules[0]!.rank,
          seededASecondsPerAdapter,
          inputMiB: mib(inputBytes),
          outputMiB: mib(outputBytes),
          bytesPerSecond: Math.round((inputBytes + outputBytes) / mergeSeconds),
          mibPerSecond: Math.round(mib(inputBytes + outputBytes) / mergeSeconds),
        },
        writeMergedF16: write,
        catSharedSeed: {
          seconds: sharedSeconds,
          outputRank: collapsed.modules[0]!.rank,
          bytesPerSecond: Math.round(sharedBytes / sharedSeconds),
        },
        peakRssMiB: peakRssMiB(),
        bytesProcessed: "input A (as materialised F32) + input B + output A + output B, F32 bytes, per second of merge",
      },
      null,
      2,
    ),
  );
}

await main();
