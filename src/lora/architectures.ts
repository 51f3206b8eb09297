import type { GgufFile } from "../gguf/gguf-types.js";
import { LoraError } from "./errors.js";
import { GGUF_TENSOR_STEM, TARGET_MODULES, type TargetModule } from "./target-modules.js";

/**
 * The one table of how each supported GGUF architecture lays out the projections an adapter can target: which
 * HF module (PEFT name) becomes which GGUF tensor, whether HF->GGUF conversion permuted the module's output rows
 * for llama.cpp's rope, which GGUF tensors are fused, and what cannot be adapted. Import, inspect, merge, the
 * PEFT and GGUF exports, GGUF LoRA import and the server's compiled adapters all read it.
 *
 * Verified against llama.cpp's converter and model loaders as bundled with node-llama-cpp 3.21.1
 * (convert_hf_to_gguf.py now lives in conversion/*.py; the graphs in src/models/*.cpp):
 * - llama (conversion/llama.py LlamaModel, registered for LlamaForCausalLM and MistralForCausalLM):
 *   `undo_permute = True`, modify_tensors applies LlamaModel.permute to q_proj (n_head) and k_proj
 *   (n_head_kv); llama.cpp's llama graph uses LLAMA_ROPE_TYPE_NORM (adjacent pairs), hence the permutation.
 * - qwen2 / qwen3 (conversion/qwen.py Qwen2Model, Qwen3Model(Qwen2Model)): no permute; both use
 *   LLAMA_ROPE_TYPE_NEOX (llama-model.cpp llama_model_rope_type), the same rotate_half as HF. qwen2 has q/k/v
 *   biases (attn_q.bias ...), qwen3 q/k RMSNorms (attn_q_norm / attn_k_norm), neither adaptable here.
 * - gemma2 / gemma3 (conversion/gemma.py Gemma2Model, Gemma3Model): no permute (ROPE_TYPE_NEOX); every
 *   `*norm.weight` is stored as 1 + w (HF's (1 + w) RMSNorm), lm_head is dropped (tied to token_embd).
 * - phi3 (conversion/phi.py Phi3MiniModel): no permute (ROPE_TYPE_NEOX); HF's fused self_attn.qkv_proj maps to
 *   attn_qkv ([q; k; v] rows) and mlp.gate_up_proj to ffn_up ([gate; up] rows, gate first: llama.cpp's phi3
 *   graph runs LLM_FFN_SWIGLU on ffn_up with no ffn_gate, which splits the rows in half and applies silu to
 *   the first half, as HF's Phi3MLP does with `gate, up = chunk(2)`).
 */

/** How a module's GGUF rows relate to HF's: "heads" / "kv_heads" = rope-permuted by that head count. */
export type RowOrder = "same" | "heads" | "kv_heads";

export interface ModuleMapping {
  /** `blk.{layer}.<stem>.weight` in the base GGUF. */
  readonly stem: string;
  readonly rows: RowOrder;
}

export interface ArchitectureLayout {
  /** `general.architecture` of the base GGUF. */
  readonly architecture: string;
  /** The model families that convert to it, for messages and docs. */
  readonly families: string;
  /** Every module an adapter may target on this architecture. */
  readonly modules: Readonly<Partial<Record<TargetModule, ModuleMapping>>>;
  /** For fused modules: the HF projections whose rows are stacked, in GGUF row order. */
  readonly fused: Readonly<Partial<Record<TargetModule, readonly string[]>>>;
  /** Modules an adapter may name that cannot be adapted here, with the reason shown to the user. */
  readonly refused: Readonly<Record<string, string>>;
  /** Whether the native trainer (native/) builds this architecture's graph. */
  readonly trains: boolean;
}

/** The seven separate projections under llama.cpp's usual stems (fused ones are per architecture). */
const LLAMA_STYLE_STEMS = Object.fromEntries(TARGET_MODULES.map((module) => [module, GGUF_TENSOR_STEM[module]]));

function unfused(permuted: boolean): ArchitectureLayout["modules"] {
  return Object.fromEntries(
    Object.entries(LLAMA_STYLE_STEMS).map(([module, stem]) => {
      const rows: RowOrder = !permuted ? "same" : module === "q_proj" ? "heads" : module === "k_proj" ? "kv_heads" : "same";
      return [module, { stem, rows }];
    }),
  );
}

/** Never adaptable: llama.cpp applies LoRA to the embedding and output differently, and we store neither. */
const ALWAYS_REFUSED: Readonly<Record<string, string>> = {
  embed_tokens: "adapters on the token embedding are not supported",
  lm_head: "adapters on the output head (lm_head) are not supported",
};

const NO_FUSED = (families: string): Record<string, string> => ({
  qkv_proj: `${families} has separate q_proj/k_proj/v_proj, not a fused qkv_proj`,
  gate_up_proj: `${families} has separate gate_proj/up_proj, not a fused gate_up_proj`,
});

function unfusedArchitecture(architecture: string, families: string, permuted: boolean, trains: boolean): ArchitectureLayout {
  return {
    architecture,
    families,
    modules: unfused(permuted),
    fused: {},
    refused: { ...ALWAYS_REFUSED, ...NO_FUSED(families) },
    trains,
  };
}

const PHI3_FUSED_ATTENTION = "Phi-3 stores q/k/v as one fused tensor (attn_qkv): target qkv_proj instead";
const PHI3_FUSED_MLP = "Phi-3 stores gate/up as one fused tensor (ffn_up, gate half first): target gate_up_proj instead";

export const ARCHITECTURES: ReadonlyMap<string, ArchitectureLayout> = new Map(
  [
    unfusedArchitecture("llama", "Llama 2/3, Mistral", true, true),
    unfusedArchitecture("qwen2", "Qwen2/2.5", false, true),
    unfusedArchitecture("qwen3", "Qwen3", false, true),
    unfusedArchitecture("gemma2", "Gemma 2", false, false),
    unfusedArchitecture("gemma3", "Gemma 3", false, false),
    {
      architecture: "phi3",
      families: "Phi-3",
      modules: {
        qkv_proj: { stem: "attn_qkv", rows: "same" },
        o_proj: { stem: "attn_output", rows: "same" },
        gate_up_proj: { stem: "ffn_up", rows: "same" },
        down_proj: { stem: "ffn_down", rows: "same" },
      },
      fused: { qkv_proj: ["q_proj", "k_proj", "v_proj"], gate_up_proj: ["gate_proj", "up_proj"] },
      refused: {
        ...ALWAYS_REFUSED,
        q_proj: PHI3_FUSED_ATTENTION,
        k_proj: PHI3_FUSED_ATTENTION,
        v_proj: PHI3_FUSED_ATTENTION,
        gate_proj: PHI3_FUSED_MLP,
        up_proj: PHI3_FUSED_MLP,
      },
      trains: false,
    } satisfies ArchitectureLayout,
  ].map((layout) => [layout.architecture, layout]),
);

export const SUPPORTED_ARCHITECTURES: readonly string[] = [...ARCHITECTURES.keys()];

/** The architectures the native trainer supports, for refusals. */
export const TRAINABLE_ARCHITECTURES: readonly string[] = [...ARCHITECTURES.values()].filter((a) => a.trains).map((a) => a.architecture);

/** The layout of `architecture`; throws ADAPTER_UNSUPPORTED naming the supported ones. */
export function architectureLayout(architecture: string): ArchitectureLayout {
  const layout = ARCHITECTURES.get(architecture);
  if (!layout) {
    throw new LoraError(
      "ADAPTER_UNSUPPORTED",
      `adapters are not supported for architecture '${architecture}' (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`,
    );
  }
  return layout;
}

/** Why `module` (a PEFT module name's last part) cannot be adapted on `layout`; undefined when it can. */
export function moduleProblem(layout: ArchitectureLayout, module: string): string | undefined {
  if (layout.modules[module as TargetModule]) return undefined;
  const reason = layout.refused[module];
  if (reason) return `target module '${module}' is not supported: ${reason}`;
  const allowed = Object.keys(layout.modules).join(", ");
  return `target module '${module}' is not supported on ${layout.architecture} (supported: ${allowed})`;
}

/** The base tensor a module adapts: `blk.{layer}.<stem>.weight`; throws when the architecture lacks it. */
export function baseTensorName(layout: ArchitectureLayout, layer: number, module: TargetModule): string {
  const mapping = layout.modules[module];
  if (!mapping) throw new LoraError("ADAPTER_UNSUPPORTED", `layer ${layer}: ${moduleProblem(layout, module)}`);
  return `blk.${layer}.${mapping.stem}.weight`;
}

/** The inverse of baseTensorName for one layout: module of `blk.{i}.<stem>.weight`, or undefined. */
export function moduleOfBaseTensor(layout: ArchitectureLayout, name: string): { layer: number; module: TargetModule } | undefined {
  const match = /^blk\.(\d+)\.(.+)\.weight$/.exec(name);
  if (!match) return undefined;
  for (const [module, mapping] of Object.entries(layout.modules)) {
    if (mapping.stem === match[2]) return { layer: Number(match[1]), module: module as TargetModule };
  }
  return undefined;
}

/** A count that may be stored per layer (an array), as some architectures do. */
function metadataCount(header: Pick<GgufFile, "metadata">, key: string, layer: number): number | undefined {
  const value = header.metadata.get(key);
  if (!value) return undefined;
  const raw = value.type === "array" ? value.value[layer] : value.value;
  const n = typeof raw === "bigint" ? Number(raw) : raw;
  return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * The head count whose rope permutation the module's GGUF rows carry (see model/llama-permute.ts), or null when
 * its rows are in HF order. Throws when the base lacks the head-count metadata it needs.
 */
export function ropePermutationHeads(
  layout: ArchitectureLayout,
  header: Pick<GgufFile, "metadata">,
  layer: number,
  module: TargetModule,
): number | null {
  const rows = layout.modules[module]?.rows ?? "same";
  if (rows === "same") return null;
  const arch = layout.architecture;
  const nHead = metadataCount(header, `${arch}.attention.head_count`, layer);
  const heads = rows === "heads" ? nHead : (metadataCount(header, `${arch}.attention.head_count_kv`, layer) ?? nHead);
  if (heads === undefined) throw new LoraError("GGUF_LORA_INVALID", `the base model has no ${arch}.attention.head_count`);
  return heads;
}
