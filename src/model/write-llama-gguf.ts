import type { GgufMetadataValue, GgufTensorInput } from "../gguf/gguf-types.js";
import { writeGgufFile } from "../gguf/gguf-writer.js";
import { tokenizerMetadata, type GgufTokenizerSpec } from "./byte-tokenizer.js";
import { hfLlamaTensorSpecs } from "./hf-llama-weights.js";
import { headDim, validateLlamaConfig, type LlamaConfig } from "./llama-config.js";
import { permuteRowsForRope } from "./llama-permute.js";
import { FILE_TYPE, weightTensorType, type WeightDtype } from "./weight-dtype.js";

export interface WriteLlamaGgufOptions {
  config: LlamaConfig;
  /** HF-layout weights (names as in `hfLlamaTensorSpecs`); `lm_head.weight` may be absent (tied). */
  weights: Map<string, Float32Array>;
  dtype: WeightDtype;
  tokenizer: GgufTokenizerSpec;
  chatTemplate?: string;
  name?: string;
}

/** HF per-layer tensor suffix -> llama.cpp tensor name suffix (llama.cpp's LLM_TENSOR_NAMES for llama). */
const LAYER_TENSOR_NAMES: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** The GGUF tensor name llama.cpp expects for a HF llama tensor name. */
export function ggufNameForHfTensor(hfName: string): string {
  if (hfName === "model.embed_tokens.weight") return "token_embd.weight";
  if (hfName === "model.norm.weight") return "output_norm.weight";
  if (hfName === "lm_head.weight") return "output.weight";
  const match = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const suffix = match && LAYER_TENSOR_NAMES[match[2]!];
  if (!match || !suffix) throw new Error(`no GGUF name for HF tensor '${hfName}'`);
  return `blk.${match[1]}.${suffix}`;
}

/**
 * Writes a llama-architecture GGUF the way convert_hf_to_gguf.py would: HF names mapped to llama.cpp's,
 * q/k rows permuted for llama.cpp's rope layout, norms kept F32 (as llama.cpp does) when dtype is f16.
 */
export async function writeLlamaGguf(path: string, options: WriteLlamaGgufOptions): Promise<void> {
  const { config, weights, tokenizer } = options;
  validateLlamaConfig(config);
  if (tokenizer.tokens.length !== config.vocabSize) {
    throw new Error(`tokenizer has ${tokenizer.tokens.length} tokens but vocabSize is ${config.vocabSize}`);
  }
  const tensors = hfLlamaTensorSpecs(config).map((spec): GgufTensorInput => {
    const data = tensorData(weights, spec.name);
    const expected = spec.dims.reduce((product, dim) => product * dim, 1);
    if (data.length !== expected) {
      throw new Error(`weight '${spec.name}' has ${data.length} values, expected [${spec.dims.join(", ")}]`);
    }
    const rows = spec.dims[0];
    const cols = spec.dims[1] ?? 1;
    return {
      name: ggufNameForHfTensor(spec.name),
      type: spec.kind === "norm" ? "F32" : weightTensorType(options.dtype, cols),
      shape: spec.dims.length === 1 ? [rows] : [cols, rows], // ggml ne order: fastest dim first
      data: permuteForRopeIfNeeded(spec.name, data, rows, cols, config),
    };
  });
  await writeGgufFile(path, { metadata: llamaMetadata(options), tensors });
}

function tensorData(weights: Map<string, Float32Array>, name: string): Float32Array {
  const data = weights.get(name) ?? (name === "lm_head.weight" ? weights.get("model.embed_tokens.weight") : undefined);
  if (!data) throw new Error(`missing weight '${name}'`);
  return data;
}

function permuteForRopeIfNeeded(hfName: string, data: Float32Array, rows: number, cols: number, config: LlamaConfig): Float32Array {
  if (hfName.endsWith("self_attn.q_proj.weight")) return permuteRowsForRope(data, rows, cols, config.nHead);
  if (hfName.endsWith("self_attn.k_proj.weight")) return permuteRowsForRope(data, rows, cols, config.nHeadKv);
  return data;
}

function llamaMetadata(options: WriteLlamaGgufOptions): Array<[string, GgufMetadataValue]> {
  const { config } = options;
  const u32 = (value: number): GgufMetadataValue => ({ type: "uint32", value });
  const f32 = (value: number): GgufMetadataValue => ({ type: "float32", value });
  return [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: options.name ?? "lori-generated-llama" }],
    ["general.file_type", u32(FILE_TYPE[options.dtype])],
    ["llama.vocab_size", u32(config.vocabSize)],
    ["llama.context_length", u32(config.contextLength)],
    ["llama.embedding_length", u32(config.nEmbd)],
    ["llama.block_count", u32(config.nLayer)],
    ["llama.feed_forward_length", u32(config.nFf)],
    ["llama.attention.head_count", u32(config.nHead)],
    ["llama.attention.head_count_kv", u32(config.nHeadKv)],
    ["llama.rope.dimension_count", u32(headDim(config))],
    ["llama.rope.freq_base", f32(config.ropeTheta)],
    ["llama.attention.layer_norm_rms_epsilon", f32(config.rmsEps)],
    ...tokenizerMetadata(options.tokenizer, options.chatTemplate),
  ];
}
