/**
 * The seven projections LoRI targets in llama-style blocks (also the training default), plus the fused
 * projections of architectures that store q/k/v or gate/up as one matrix (Phi-3). Which of them an
 * architecture has, and the GGUF tensor each maps to, is in architectures.ts. The numeric ids are what seeded A
 * uses as a Philox counter word; they are part of the on-disk format (docs/adapter-format.md): never renumber
 * them, only append.
 */
export const TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

/** Phi-3's fused projections: qkv_proj = [q; k; v] rows, gate_up_proj = [gate; up] rows (gate half first). */
export const FUSED_MODULES = ["qkv_proj", "gate_up_proj"] as const;

/** Every module name an adapter may carry, in file order. */
export const ALL_TARGET_MODULES = [...TARGET_MODULES, ...FUSED_MODULES] as const;

/** One of the seven unfused projections. */
export type ProjectionModule = (typeof TARGET_MODULES)[number];

export type TargetModule = ProjectionModule | (typeof FUSED_MODULES)[number];

export const MODULE_ID: Readonly<Record<TargetModule, number>> = {
  q_proj: 0,
  k_proj: 1,
  v_proj: 2,
  o_proj: 3,
  gate_proj: 4,
  up_proj: 5,
  down_proj: 6,
  qkv_proj: 7,
  gate_up_proj: 8,
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
  qkv_proj: "self_attn",
  gate_up_proj: "mlp",
};

/**
 * llama.cpp's usual tensor name stem for each projection (`blk.{i}.<stem>.weight`). The per-architecture table
 * (architectures.ts) decides which of them a base has; the trainer (llama, qwen2, qwen3: the same seven stems) uses this directly.
 */
export const GGUF_TENSOR_STEM: Readonly<Record<TargetModule, string>> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
  qkv_proj: "attn_qkv",
  gate_up_proj: "ffn_up",
};

export function isTargetModule(value: string): value is TargetModule {
  return (ALL_TARGET_MODULES as readonly string[]).includes(value);
}

export function isProjectionModule(value: string): value is ProjectionModule {
  return (TARGET_MODULES as readonly string[]).includes(value);
}

/** Llama-3-8B projection shapes [out, in] (32 layers): the reference shapes of size reports and benchmarks. */
export const LLAMA3_8B_SHAPES: Readonly<Record<ProjectionModule, readonly [number, number]>> = {
  q_proj: [4096, 4096],
  k_proj: [1024, 4096],
  v_proj: [1024, 4096],
  o_proj: [4096, 4096],
  gate_proj: [14336, 4096],
  up_proj: [14336, 4096],
  down_proj: [4096, 14336],
};
