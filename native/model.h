// A llama-style GGUF base model, frozen, loaded into a ggml backend buffer.
// general.architecture "llama", "qwen2" or "qwen3" (no MoE, no fused QKV); weights may be F32/F16/BF16 or
// quantized (Q8_0, Q4_K, ... — kept as they are on CPU, dequantized to F32 on a GPU, where the backward pass
// through frozen weights needs OUT_PROD, which is F32-only there).
#pragma once

#include "ggml-backend.h"
#include "ggml.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lori {

// LoRI target projections; the value is the moduleId of the seeded-A spec.
enum Module : int { MOD_Q = 0, MOD_K = 1, MOD_V = 2, MOD_O = 3, MOD_GATE = 4, MOD_UP = 5, MOD_DOWN = 6, MOD_COUNT = 7 };

const char * module_short_name(int module); // "q", "k", ..., "down"
const char * module_gguf_name(int module);  // "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"
int module_from_short_name(const std::string & name); // -1 when unknown

// llama.cpp's rope layouts (ggml_rope_ext's mode): NORM rotates adjacent pairs (llama, whose q/k rows the
// converter permutes for it), NEOX rotates the two halves of a head (qwen2/qwen3, rows as in HF).
enum RopeMode : int { ROPE_NORM = 0, ROPE_NEOX = 2 };

// The architectures the trainer builds (llama.cpp's llm_build_llama / qwen2 / qwen3 graphs): the same block,
// differing in rope layout, optional q/k/v biases (qwen2 has them) and qwen3's per-head RMSNorm of q and k.
bool is_trainable_architecture(const std::string & arch);

struct LlamaHParams {
    std::string arch = "llama"; // general.architecture; also the prefix of its metadata keys
    int rope_mode = ROPE_NORM;
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, head_dim = 0, n_rot = 0;
    int64_t n_ctx_train = 0;
    float rms_eps = 1e-5f, rope_freq_base = 10000.0f, rope_freq_scale = 1.0f;
};

struct LlamaLayer {
    ggml_tensor * attn_norm = nullptr;
    ggml_tensor * w[MOD_COUNT] = {};    // q, k, v, o, gate, up, down (ggml ne = [in, out])
    ggml_tensor * bias[MOD_COUNT] = {}; // optional (qwen2's q/k/v); frozen like every base weight
    ggml_tensor * q_norm = nullptr;     // qwen3: RMSNorm weight [head_dim] applied per head to q before rope
    ggml_tensor * k_norm = nullptr;     // qwen3: the same for k
    ggml_tensor * ffn_norm = nullptr;
};

struct LlamaModel {
    std::string path;
    LlamaHParams hp;
    std::vector<LlamaLayer> layers;
    ggml_tensor * tok_embd = nullptr;
    ggml_tensor * output_norm = nullptr;
    ggml_tensor * output = nullptr; // == tok_embd when the model ties embeddings
    ggml_tensor * output_b = nullptr; // optional LM-head bias (qwen2 allows one)
    ggml_tensor * rope_freqs = nullptr;
    std::string weight_types; // types as held in memory, e.g. "f32" or "q4_K,q6_K,f32"
    std::string file_weight_types; // types in the GGUF file

    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buffer = nullptr;

    LlamaModel() = default;
    LlamaModel(const LlamaModel &) = delete;
    LlamaModel & operator=(const LlamaModel &) = delete;
    ~LlamaModel();

    int64_t in_features(int module) const;
    int64_t out_features(int module) const;
};

// How frozen weights are held. ggml's CPU backward through a non-F32 weight (OUT_PROD with F16/quantized src0)
// dequantizes the whole matrix once per token (~8x slower than F32 for an F16 model), and CUDA's OUT_PROD is
// F32-only, so F32 copies are the fast path; "native" keeps the file's types (least memory, slow backward on CPU).
enum class FrozenWeights { Auto, Native, F32 }; // Auto: F32 on a GPU, and on CPU when that fits in 40% of RAM
FrozenWeights frozen_weights_from_name(const std::string & name); // "auto" | "native" | "f32"

// Throws Error(EXIT_INPUT) for unreadable files, other architectures (named), unsupported tensor types.
void load_llama_model(LlamaModel & model, const std::string & path, ggml_backend_t backend, bool on_gpu, FrozenWeights policy);

} // namespace lori
