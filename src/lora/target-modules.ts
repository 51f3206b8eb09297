/**
 * The seven projections LoRI targets, with the numeric ids that seeded A uses as a Philox counter word. The ids
 * are part of the on-disk format (docs/adapter-format.md): never renumber them.
 */
export const TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

export type TargetModule = (typeof TARGET_MODULES)[number];

export const MODULE_ID: Readonly<Record<TargetModule, number>> = {
  q_proj: 0,
  k_proj: 1,
  v_proj: 2,
  o_proj: 3,
  gate_proj: 4,
  up_proj: 5,
  down_proj: 6,
};

/** The HF submodule that holds each projection, for PEFT tensor names. */
export const MODULE_PARENT: Readonly<Record<TargetModule, "self_attn" | "mlp">> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

/** llama.cpp's tensor name stem for each projection (`blk.{i}.<stem>.weight`). */
export const GGUF_TENSOR_STEM: Readonly<Record<TargetModule, string>> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
};

export function isTargetModule(value: string): value is TargetModule {
  return (TARGET_MODULES as readonly string[]).includes(value);
}

/** Llama-3-8B projection shapes [out, in] (32 layers): the reference shapes of size reports and benchmarks. */
export const LLAMA3_8B_SHAPES: Readonly<Record<TargetModule, readonly [number, number]>> = {
  q_proj: [4096, 4096],
  k_proj: [1024, 4096],
  v_proj: [1024, 4096],
  o_proj: [4096, 4096],
  gate_proj: [14336, 4096],
  up_proj: [14336, 4096],
  down_proj: [4096, 14336],
};
