import { readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { GgufFile } from "../gguf/gguf-types.js";
import { deriveConfig, validateModule, type Adapter, type LoraModule } from "./adapter.js";
import { LORI_FORMAT_VERSION, parseAdapterConfig, type AdapterConfig, type LoriSection, type LoriVariant } from "./adapter-config.js";
import { CONFIG_FILE, readAdapterDir, WEIGHTS_FILE, writeAdapterDir } from "./adapter-io.js";
import { parseTensorName } from "./adapter-layout.js";
import { ARCHITECTURES, baseTensorName, moduleProblem, SUPPORTED_ARCHITECTURES, type ArchitectureLayout } from "./architectures.js";
import { baseFingerprintOfGguf, ggufArchitecture, type BaseFingerprint } from "./base-fingerprint.js";
import { LoraError } from "./errors.js";
import { maskByteLength } from "./mask.js";
import { SafetensorsFile } from "./safetensors.js";
import { generateSeededA } from "./seeded-a.js";

/**
 * Imports a PEFT LoRA / LoRI-D / LoRI-S directory (or one of ours) for a GGUF base of any architecture in
 * architectures.ts. Everything that can be checked is checked before anything is returned, and each check lists
 * every problem it finds in one message: the config (fan_in_fan_out & co. via parseAdapterConfig), target modules the
 * base's architecture cannot adapt (Phi-3's unfused q/k/v, ...), unknown tensors, the base's architecture, each
 * module's shape against the base tensor it adapts (ggml ne [in, out]), and non-finite values. B rows stay in
 * HF order (the format's convention; the GGUF compile applies the architecture's rope permutation).
 *
 * Recovered structure: a dense A that equals the seeded A of the config's `lori.a_init` seed becomes seeded
 * (bit-exact, so exporting materialises the same bytes); a B that is mostly zeros (a published LoRI-S adapter
 * ships B dense) gets the mask "bits != 0" (so -0.0 survives too) and is stored sparse.
 */

/** Base architectures whose GGUF layout (names, q/k rope permutation) the import and compile understand. */
export const IMPORTABLE_ARCHITECTURES: ReadonlySet<string> = new Set(SUPPORTED_ARCHITECTURES);

/** Zero fraction of B (over all modules) from which an adapter without masks is treated as LoRI-S. */
export const DEFAULT_SPARSE_THRESHOLD = 0.5;

/** Problems shown in one message before the rest are counted. */
const MAX_LISTED = 20;

export interface ImportOptions {
  /** Force the variant instead of detecting it. */
  readonly variant?: LoriVariant;
  /** See DEFAULT_SPARSE_THRESHOLD. */
  readonly sparseThreshold?: number;
}

export interface ImportSummary {
  readonly variant: LoriVariant;
  /** True when B's zeros were turned into a LoRI-S mask. */
  readonly maskInferred: boolean;
  /** Modules whose stored A was recognised as the seeded A of the config's seed. */
  readonly seededModules: number;
}

function fail(dir: string, problems: readonly string[], code: ConstructorParameters<typeof LoraError>[0]): never {
  const shown = problems.slice(0, MAX_LISTED).join("; ");
  const more = problems.length > MAX_LISTED ? ` (and ${problems.length - MAX_LISTED} more)` : "";
  throw new LoraError(code, `${dir}: cannot import: ${shown}${more}`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function readConfig(dir: string): Promise<AdapterConfig> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new LoraError("ADAPTER_BAD_CONFIG", `${path}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new LoraError("ADAPTER_BAD_CONFIG", `${path}: not JSON (${(error as Error).message})`);
  }
  return parseAdapterConfig(json, path);
}

/** Names-only checks (config, tensor names, dtypes, architecture), before any tensor data is read. */
async function precheck(dir: string, config: AdapterConfig, baseHeader: GgufFile): Promise<ArchitectureLayout> {
  const problems: string[] = [];
  const architecture = ggufArchitecture(baseHeader);
  const layout = ARCHITECTURES.get(architecture);
  if (!layout) {
    problems.push(`the base model's architecture is '${architecture}'; import supports ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  // Each refused module once, first from the config's target_modules, then from the tensors themselves.
  const moduleProblems = new Set<string>();
  if (layout && typeof config.target_modules !== "string") {
    for (const target of config.target_modules) {
      const problem = moduleProblem(layout, target.split(".").at(-1) ?? target);
      if (problem && !moduleProblems.has(problem)) problems.push(problem);
      if (problem) moduleProblems.add(problem);
    }
  }
  const weights = join(dir, WEIGHTS_FILE);
  if (!(await exists(weights)) && (await exists(join(dir, "adapter_model.bin")))) {
    throw new LoraError("ADAPTER_UNSUPPORTED", `${dir}: only adapter_model.safetensors is read, not PyTorch pickles (adapter_model.bin)`);
  }
  const file = await SafetensorsFile.open(weights);
  try {
    for (const [name, info] of file.tensors) {
      const parsed = parseTensorName(name);
      const problem = parsed && layout ? moduleProblem(layout, parsed.module) : undefined;
      if (!parsed) {
        problems.push(`unsupported tensor '${name}'`);
      } else if (problem) {
        if (!moduleProblems.has(problem)) problems.push(problem);
        moduleProblems.add(problem);
      } else if (parsed.role !== "lora_B.mask" && !["F32", "F16", "BF16"].includes(info.dtype)) {
        problems.push(`tensor '${name}' has dtype ${info.dtype}; expected F32, F16 or BF16`);
      }
    }
  } finally {
    await file.close();
  }
  const recorded = config.lori?.base_fingerprint?.architecture;
  if (recorded !== undefined && recorded !== architecture) {
    problems.push(`the adapter was made for architecture '${recorded}', the base is '${architecture}'`);
  }
  if (problems.length > 0 || !layout) fail(dir, problems, "ADAPTER_UNSUPPORTED");
  return layout;
}

function countNonFinite(values: Float32Array): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) n++;
  return n;
}

/** Every module against its base tensor, and every value finite. */
function checkAgainstBase(dir: string, modules: readonly LoraModule[], baseHeader: GgufFile, layout: ArchitectureLayout): void {
  const problems: string[] = [];
  const baseShapes = new Map(baseHeader.tensors.map((t) => [t.name, t.shape]));
  for (const m of modules) {
    const where = `layer ${m.layer} ${m.module}`;
    const name = baseTensorName(layout, m.layer, m.module);
    const shape = baseShapes.get(name);
    if (!shape) {
      problems.push(`${where}: the base has no tensor ${name}`);
    } else if (shape.length !== 2 || shape[0] !== m.inFeatures || shape[1] !== m.outFeatures) {
      problems.push(`${where}: adapter is [out ${m.outFeatures}, in ${m.inFeatures}] but base ${name} is ne [${shape}] (in, out)`);
    }
    const badA = m.a.kind === "dense" ? countNonFinite(m.a.data) : 0;
    const badB = countNonFinite(m.b);
    if (badA > 0) problems.push(`${where}: lora_A has ${badA} NaN/Inf values`);
    if (badB > 0) problems.push(`${where}: lora_B has ${badB} NaN/Inf values`);
  }
  if (problems.length > 0) fail(dir, problems, "ADAPTER_BAD_TENSORS");
}

function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const b = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Dense A that is bit-for-bit the seeded A of `seed` becomes seeded (nothing to store). */
function recoverSeededA(modules: readonly LoraModule[], seed: number | undefined): LoraModule[] {
  if (seed === undefined) return [...modules];
  return modules.map((m) => {
    if (m.a.kind !== "dense") return m;
    const seeded = generateSeededA({ seed, layer: m.layer, module: m.module, rank: m.rank, inFeatures: m.inFeatures });
    return sameBits(m.a.data, seeded) ? { ...m, a: { kind: "seeded", seed } } : m;
  });
}

/** Mask = float32 bits != 0 (keeps -0.0 exact), bit-packed like mask.ts. */
function maskOfNonZeroBits(b: Float32Array): Uint8Array {
  const bits = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const mask = new Uint8Array(maskByteLength(b.length));
  for (let i = 0; i < bits.length; i++) if (bits[i] !== 0) mask[i >> 3]! |= 1 << (i & 7);
  return mask;
}

function zeroFraction(modules: readonly LoraModule[]): number {
  let zeros = 0;
  let total = 0;
  for (const m of modules) {
    const bits = new Uint32Array(m.b.buffer, m.b.byteOffset, m.b.length);
    for (let i = 0; i < bits.length; i++) if (bits[i] === 0) zeros++;
    total += m.b.length;
  }
  return total === 0 ? 0 : zeros / total;
}

/** The base's fingerprint as recorded in an adapter's config. */
export function baseFingerprintRecord(baseHeader: GgufFile): NonNullable<LoriSection["base_fingerprint"]> {
  return fingerprintJson(baseFingerprintOfGguf(baseHeader));
}

function fingerprintJson(fp: BaseFingerprint): NonNullable<LoriSection["base_fingerprint"]> {
  return {
    architecture: fp.architecture,
    tensors: Object.fromEntries(Object.entries(fp.tensors).map(([n, s]) => [n, [...s]])),
    sha256: fp.sha256,
  };
}

/**
 * The LoRI structure a PEFT directory carries implicitly, made explicit: a dense A equal to the seeded A of the
 * config's `lori.a_init` seed becomes seeded; a B that is mostly zeros (or whose config says LoRI-S) gets the
 * mask "bits != 0". The one detection both `import` and the upload route use, so they agree on the variant and
 * sparsity of the same directory.
 */
export function recoverLoriStructure(
  config: AdapterConfig,
  readModules: readonly LoraModule[],
  options: ImportOptions = {},
): { modules: LoraModule[]; summary: ImportSummary } {
  // DoRA (magnitudes present): never LoRI-S (a zero B is its fresh state, not a mask) and always variant "dora".
  const dora = readModules.some((m) => m.magnitude);
  if (dora && options.variant !== undefined && options.variant !== "dora") {
    throw new LoraError("ADAPTER_UNSUPPORTED", `--variant ${options.variant} does not apply to a DoRA adapter (use_dora: true)`);
  }
  if (!dora && options.variant === "dora") {
    throw new LoraError("ADAPTER_UNSUPPORTED", "--variant dora needs a DoRA adapter (use_dora: true and lora_magnitude_vector tensors)");
  }
  let modules = recoverSeededA(readModules, config.lori?.a_init?.seed);
  const seededModules = modules.filter((m, i) => m.a.kind === "seeded" && readModules[i]!.a.kind === "dense").length;
  const hasMasks = modules.some((m) => m.mask);
  const threshold = options.sparseThreshold ?? DEFAULT_SPARSE_THRESHOLD;
  const detect = options.variant === undefined && (config.lori?.variant === "lori-s" || zeroFraction(modules) >= threshold);
  const maskInferred = !dora && !hasMasks && (options.variant === "lori-s" || detect);
  if (maskInferred) modules = modules.map((m) => ({ ...m, mask: maskOfNonZeroBits(m.b) }));
  modules.forEach(validateModule);

  const allSeeded = modules.every((m) => m.a.kind === "seeded");
  const allMasked = modules.every((m) => m.mask);
  const variant: LoriVariant = dora
    ? "dora"
    : (options.variant ?? (allMasked ? "lori-s" : allSeeded ? "lori-d" : (config.lori?.variant ?? "lora")));
  return { modules, summary: { variant, maskInferred, seededModules } };
}

/**
 * The config of a converted adapter: the source's own fields and lori block, the variant found, a lineage entry
 * (`from`: "lori" or "peft" for directories, "gguf" for GGUF LoRA files).
 */
export function convertedAdapter(
  config: AdapterConfig,
  modules: LoraModule[],
  summary: ImportSummary,
  source: string,
  baseFingerprint: NonNullable<LoriSection["base_fingerprint"]> | null,
  from: string = config.lori ? "lori" : "peft",
): Adapter {
  const entry = { op: "import", source, from, variant: summary.variant, mask_inferred: summary.maskInferred };
  const lori: LoriSection = {
    ...config.lori,
    format_version: LORI_FORMAT_VERSION,
    variant: summary.variant,
    sparsity: 0,
    a_init: null,
    base_fingerprint: baseFingerprint ?? config.lori?.base_fingerprint ?? null,
    lineage: [...(config.lori?.lineage ?? []), entry],
    training: config.lori?.training ?? null,
  };
  return { config: deriveConfig({ ...config, lori }, modules), modules };
}

/**
 * Reads, checks and converts the adapter in `dir` for the base whose GGUF header is `baseHeader`. Nothing is
 * written; the caller stores the result (writeAdapterDir, atomic).
 */
export async function importAdapterDir(
  dir: string,
  baseHeader: GgufFile,
  options: ImportOptions = {},
): Promise<{ adapter: Adapter; summary: ImportSummary }> {
  const config = await readConfig(dir);
  const layout = await precheck(dir, config, baseHeader);
  const read = await readAdapterDir(dir);
  checkAgainstBase(dir, read.modules, baseHeader, layout);
  const { modules, summary } = recoverLoriStructure(config, read.modules, options);
  const adapter = convertedAdapter(config, modules, summary, basename(resolve(dir)), baseFingerprintRecord(baseHeader));
  return { adapter, summary };
}

/**
 * For an adapter directory that arrived without going through `import` (an upload): converts it in place the
 * way `import` would (seeded A, LoRI-S mask from B's zeros, variant), so both report the same variant and
 * sparsity for the same files. A directory already in our format with nothing to recover is left byte for byte
 * as it is. `source` names it in the lineage. No base model is at hand here, so no fingerprint is added.
 */
export async function normalizeAdapterDir(
  dir: string,
  source: string,
): Promise<{ adapter: Adapter; summary: ImportSummary; rewritten: boolean }> {
  const read = await readAdapterDir(dir);
  const { modules, summary } = recoverLoriStructure(read.config, read.modules);
  const unchanged = read.config.lori !== undefined && !summary.maskInferred && summary.seededModules === 0;
  if (unchanged) return { adapter: read, summary, rewritten: false };
  const adapter = convertedAdapter(read.config, modules, summary, source, null);
  await writeAdapterDir(dir, adapter, { overwrite: true });
  return { adapter, summary, rewritten: true };
}
