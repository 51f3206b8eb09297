import { stat } from "node:fs/promises";
import { BYTE_TOKENIZER_BASE_VOCAB } from "../../model/byte-tokenizer.js";
import { isModelArchitecture, MODEL_ARCHITECTURES, type ModelArchitecture } from "../../model/arch-config.js";
import { archTinyModelConfig, createArchModel } from "../../model/arch-tiny-model.js";
import { hfArchTensorSpecs } from "../../model/hf-arch-weights.js";
import { countLlamaParameters } from "../../model/llama-config.js";
import { BENCH_SHAPE, EMBEDDED_SHAPE, tinyModelConfig } from "../../model/tiny-model.js";
import { WEIGHT_DTYPES, type WeightDtype } from "../../model/weight-dtype.js";
import { CliError, type CliCommand } from "../command.js";
import { parseCommandArgs } from "../parse-args.js";

const help = `Usage: lori-server model create --out FILE.gguf [options]

Writes a random GGUF model (llama by default) with a byte-level tokenizer (every UTF-8 byte is a token)
and a ChatML chat template. Deterministic: the same options always produce the same file. Useful for
tests, benchmarks and trying the server without downloading anything.

Options:
  --out FILE.gguf     output path (required; written atomically)
  --arch ARCH         ${MODEL_ARCHITECTURES.join("|")} (default llama): qwen2 has q/k/v biases, qwen3
                      q/k norms, gemma2/gemma3 embedding scaling, (1 + w) norms, soft-capping and sliding
                      windows, phi3 fused qkv and gate_up tensors
  --head-dim N        head size for qwen3, gemma2, gemma3 (default embd / heads)
  --layers N          transformer blocks (default ${EMBEDDED_SHAPE.layers})
  --embd N            embedding size (default ${EMBEDDED_SHAPE.embd})
  --heads N           attention heads; must divide --embd (default ${EMBEDDED_SHAPE.heads})
  --kv-heads N        key/value heads; must divide --heads (default ${EMBEDDED_SHAPE.kvHeads})
  --ff N              feed-forward size (default ${EMBEDDED_SHAPE.ff})
  --vocab N           vocabulary size, at least ${BYTE_TOKENIZER_BASE_VOCAB} (default ${BYTE_TOKENIZER_BASE_VOCAB})
  --seed N            random seed, 0 to 4294967295 (default 0)
  --dtype f32|f16|q8_0
                      weight type; norms (and biases) stay f32; q8_0 falls back to f16 for a matrix
                      whose rows are not a multiple of 32 long (default ${EMBEDDED_SHAPE.dtype})
  --name NAME         general.name of the model (default lori-tiny)
  --bench-shape       start from the benchmark shape (${BENCH_SHAPE.layers} layers, d=${BENCH_SHAPE.embd}, ${BENCH_SHAPE.heads} heads, ${BENCH_SHAPE.kvHeads} kv heads, ff ${BENCH_SHAPE.ff}, ${BENCH_SHAPE.dtype}); other options override it
  -h, --help          this help
`;

export const modelCreateCommand: CliCommand = {
  name: "model",
  summary: "Create a random GGUF model (llama, qwen2, qwen3, gemma2, gemma3, phi3) for tests and benchmarks ('model create')",
  help,
  async run(argv) {
    const parsed = parseCommandArgs(
      argv,
      {
        out: { type: "string" },
        arch: { type: "string" },
        "head-dim": { type: "string" },
        layers: { type: "string" },
        embd: { type: "string" },
        heads: { type: "string" },
        "kv-heads": { type: "string" },
        ff: { type: "string" },
        vocab: { type: "string" },
        seed: { type: "string" },
        dtype: { type: "string" },
        name: { type: "string" },
        "bench-shape": { type: "boolean" },
      },
      true,
    );
    if (!parsed) {
      process.stdout.write(help);
      return 0;
    }
    const [subcommand, ...extra] = parsed.positionals;
    if (subcommand !== "create") {
      throw new CliError(
        subcommand === undefined
          ? "missing subcommand: use 'lori-server model create --out FILE.gguf'"
          : `unknown model subcommand '${subcommand}' (expected 'create')`,
      );
    }
    if (extra.length > 0) throw new CliError(`unexpected argument '${extra[0]}'`);
    const v = parsed.values;
    if (!v.out) throw new CliError("--out FILE.gguf is required");
    if (v.dtype !== undefined && !(WEIGHT_DTYPES as readonly string[]).includes(v.dtype)) {
      throw new CliError(`--dtype must be f32, f16 or q8_0, got '${v.dtype}'`);
    }

    const architecture = architectureOption(v.arch);
    const headDim = positiveInt("--head-dim", v["head-dim"]);
    if (headDim !== undefined && architecture !== "qwen3" && architecture !== "gemma2" && architecture !== "gemma3") {
      throw new CliError(`--head-dim applies to qwen3, gemma2 and gemma3 only (the ${architecture} head size is embd / heads)`);
    }
    const base = v["bench-shape"] ? BENCH_SHAPE : EMBEDDED_SHAPE;
    const options = {
      out: v.out,
      layers: positiveInt("--layers", v.layers) ?? base.layers,
      embd: positiveInt("--embd", v.embd) ?? base.embd,
      heads: positiveInt("--heads", v.heads) ?? base.heads,
      kvHeads: positiveInt("--kv-heads", v["kv-heads"]) ?? base.kvHeads,
      ff: positiveInt("--ff", v.ff) ?? base.ff,
      vocab: positiveInt("--vocab", v.vocab) ?? BYTE_TOKENIZER_BASE_VOCAB,
      seed: seedValue(v.seed),
      dtype: (v.dtype as WeightDtype | undefined) ?? base.dtype,
      ...(v.name !== undefined ? { name: v.name } : {}),
    };
    if (options.vocab < BYTE_TOKENIZER_BASE_VOCAB) {
      throw new CliError(`--vocab must be at least ${BYTE_TOKENIZER_BASE_VOCAB} (256 bytes + 4 special tokens)`);
    }
    let parameters: number;
    try {
      if (architecture === "llama") {
        parameters = countLlamaParameters(tinyModelConfig(options));
      } else {
        const config = archTinyModelConfig(architecture, { ...options, ...(headDim !== undefined ? { headDim } : {}) });
        parameters = hfArchTensorSpecs(config).reduce((n, spec) => n + spec.dims.reduce((p, d) => p * d, 1), 0);
      }
    } catch (error) {
      throw new CliError(flagNames((error as Error).message));
    }

    const config = await createArchModel({ ...options, architecture, ...(headDim !== undefined ? { headDim } : {}) });
    const { size } = await stat(options.out);
    process.stdout.write(
      `wrote ${options.out}: ${architecture}, ${config.nLayer} layers, d=${config.nEmbd}, ${config.nHead}/${config.nHeadKv} heads, ` +
        `ff ${config.nFf}, vocab ${config.vocabSize}, ${options.dtype}, ` +
        `${(parameters / 1e6).toFixed(2)}M parameters, ${(size / 2 ** 20).toFixed(1)} MiB\n`,
    );
    return 0;
  },
};

function architectureOption(text: string | undefined): ModelArchitecture {
  if (text === undefined) return "llama";
  if (!isModelArchitecture(text)) throw new CliError(`--arch must be one of ${MODEL_ARCHITECTURES.join(", ")}, got '${text}'`);
  return text;
}

function positiveInt(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
    throw new CliError(`${flag} must be a positive integer, got '${text}'`);
  }
  return value;
}

function seedValue(text: string | undefined): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value > 0xffffffff) {
    throw new CliError(`--seed must be an integer from 0 to 4294967295, got '${text}'`);
  }
  return value;
}

/** Rewrites config field names in validation messages as the flags the user typed. */
function flagNames(message: string): string {
  return message
    .replace(/^nLayer\b/, "--layers")
    .replace(/^nEmbd\b/, "--embd")
    .replace(/^nHeadKv\b/, "--kv-heads")
    .replace(/^nHead\b/, "--heads")
    .replace(/^nFf\b/, "--ff")
    .replace(/^vocabSize\b/, "--vocab")
    .replace(/^headDim\b/, "--head-dim");
}
