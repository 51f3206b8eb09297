import type { GgufMetadataValue, GgufTensorInput } from "../gguf/gguf-types.js";
import { writeGgufFile } from "../gguf/gguf-writer.js";
import { isGemma, validateArchConfig, type ArchModelConfig } from "./arch-config.js";
import { tokenizerMetadata, type GgufTokenizerSpec } from "./byte-tokenizer.js";
import { hfArchTensorSpecs } from "./hf-arch-weights.js";
import { FILE_TYPE, weightTensorType, type WeightDtype } from "./weight-dtype.js";

/**
 * Writes a qwen2 / qwen3 / gemma2 / gemma3 / phi3 GGUF the way llama.cpp's converter would (conversion/qwen.py,
 * gemma.py, phi.py and gguf-py's tensor_mapping.py in the llama.cpp that node-llama-cpp bundles): HF names
 * mapped to llama.cpp's, no q/k permutation (these families use NeoX rope, like HF), Gemma's norm weights
 * stored as 1 + w, Gemma's lm_head dropped (tied), norms and biases F32. Llama goes through write-llama-gguf.ts.
 */

export interface WriteArchGgufOptions {
  readonly config: ArchModelConfig;
  /** HF-layout weights (names as in hfArchTensorSpecs). */
  readonly weights: ReadonlyMap<string, Float32Array>;
  readonly dtype: WeightDtype;
  readonly tokenizer: GgufTokenizerSpec;
  readonly chatTemplate?: string;
  readonly name?: string;
}

/** HF per-layer suffix -> llama.cpp suffix, for every family but Gemma's norms (below). */
const LAYER_NAMES: Readonly<Record<string, string>> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.q_proj.bias": "attn_q.bias",
  "self_attn.k_proj.bias": "attn_k.bias",
  "self_attn.v_proj.bias": "attn_v.bias",
  "self_attn.qkv_proj.weight": "attn_qkv.weight",
  "self_attn.q_norm.weight": "attn_q_norm.weight",
  "self_attn.k_norm.weight": "attn_k_norm.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.gate_up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** Gemma 2/3 have four norms per block: HF's post_attention_layernorm is a post-norm there, not the FFN's. */
const GEMMA_LAYER_NAMES: Readonly<Record<string, string>> = {
  ...LAYER_NAMES,
  "post_attention_layernorm.weight": "post_attention_norm.weight",
  "pre_feedforward_layernorm.weight": "ffn_norm.weight",
  "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
};

/** The GGUF tensor name llama.cpp expects for a HF tensor of `architecture`. */
export function ggufNameForHfArchTensor(architecture: ArchModelConfig["architecture"], hfName: string): string {
  if (hfName === "model.embed_tokens.weight") return "token_embd.weight";
  if (hfName === "model.norm.weight") return "output_norm.weight";
  if (hfName === "lm_head.weight") return "output.weight";
  const match = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const suffix = match && (isGemma(architecture) ? GEMMA_LAYER_NAMES : LAYER_NAMES)[match[2]!];
  if (!match || !suffix) throw new Error(`no GGUF name for ${architecture} tensor '${hfName}'`);
  return `blk.${match[1]}.${suffix}`;
}

export async function writeArchGguf(path: string, options: WriteArchGgufOptions): Promise<void> {
  const { config, weights } = options;
  validateArchConfig(config);
  if (config.architecture === "llama") throw new Error("llama models are written by writeLlamaGguf (q/k rope permutation)");
  if (options.tokenizer.tokens.length !== config.vocabSize) {
    throw new Error(`tokenizer has ${options.tokenizer.tokens.length} tokens but vocabSize is ${config.vocabSize}`);
  }
  if (options.name !== undefined && /phi-?3/i.test(options.name)) {
    // llama-vocab.cpp keys a Phi-3 special-token fix-up on general.name and then looks up '</s>', which the
    // byte tokenizer does not have: loading would fail with an opaque "_Map_base::at".
    throw new Error(`a model name containing 'phi3' or 'phi-3' makes llama.cpp expect Phi-3's own vocabulary; choose another name`);
  }
  const gemma = isGemma(config.architecture);
  const tensors = hfArchTensorSpecs(config).map((spec): GgufTensorInput => {
    const data = weights.get(spec.name);
    if (!data) throw new Error(`missing weight '${spec.name}'`);
    const expected = spec.dims.reduce((product, dim) => product * dim, 1);
    if (data.length !== expected) throw new Error(`weight '${spec.name}' has ${data.length} values, expected [${spec.dims.join(", ")}]`);
    const vector = spec.dims.length === 1;
    // convert_hf_to_gguf.py (gemma.py): "if name.endswith('norm.weight'): data_torch = data_torch + 1".
    const stored = gemma && spec.kind === "norm" ? Float32Array.from(data, (w) => w + 1) : data;
    return {
      name: ggufNameForHfArchTensor(config.architecture, spec.name),
      type: vector ? "F32" : weightTensorType(options.dtype, spec.dims[1]!),
      shape: vector ? [spec.dims[0]] : [spec.dims[1]!, spec.dims[0]], // ggml ne order: fastest dim first
      data: stored,
    };
  });
  await writeGgufFile(path, { metadata: archMetadata(options), tensors });
}

function archMetadata(options: WriteArchGgufOptions): Array<[string, GgufMetadataValue]> {
  const { config } = options;
  const a = config.architecture;
  const u32 = (value: number): GgufMetadataValue => ({ type: "uint32", value });
  const f32 = (value: number): GgufMetadataValue => ({ type: "float32", value });
  const entries: Array<[string, GgufMetadataValue]> = [
    ["general.architecture", { type: "string", value: a }],
    ["general.name", { type: "string", value: options.name ?? "lori-generated" }],
    ["general.file_type", u32(FILE_TYPE[options.dtype])],
    [`${a}.vocab_size`, u32(config.vocabSize)],
    [`${a}.context_length`, u32(config.contextLength)],
    [`${a}.embedding_length`, u32(config.nEmbd)],
    [`${a}.block_count`, u32(config.nLayer)],
    [`${a}.feed_forward_length`, u32(config.nFf)],
    [`${a}.attention.head_count`, u32(config.nHead)],
    [`${a}.attention.head_count_kv`, u32(config.nHeadKv)],
    [`${a}.attention.key_length`, u32(config.headDim)],
    [`${a}.attention.value_length`, u32(config.headDim)],
    [`${a}.rope.dimension_count`, u32(config.headDim)],
    [`${a}.rope.freq_base`, f32(config.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32(config.rmsEps)],
  ];
  if (config.attnSoftcap !== null) entries.push([`${a}.attn_logit_softcapping`, f32(config.attnSoftcap)]);
  if (config.finalSoftcap !== null) entries.push([`${a}.final_logit_softcapping`, f32(config.finalSoftcap)]);
  if (config.slidingWindow !== null) entries.push([`${a}.attention.sliding_window`, u32(config.slidingWindow)]);
  if (a === "gemma3" && config.slidingWindowPattern !== null) {
    entries.push([`${a}.attention.sliding_window_pattern`, u32(config.slidingWindowPattern)]);
  }
  if (config.ropeThetaSwa !== null) entries.push([`${a}.rope.freq_base_swa`, f32(config.ropeThetaSwa)]);
  if (a === "phi3") entries.push([`${a}.rope.scaling.original_context_length`, u32(config.contextLength)]);
  entries.push(...tokenizerMetadata(options.tokenizer, options.chatTemplate));
  return entries;
}
