// LoRI/LoRA adapter tensors on a backend: for every (layer, target) A [r, in] (seeded or loaded), B [out, r],
// and for LoRI-S the mask M (1 = trainable) plus B_frozen = B_init ⊙ (1 - M) for continual learning.
// The target linear is  y = W x + s * B_eff (A x),  s = alpha / r,  B_eff = B ⊙ M + B_frozen  (B ⊙ M without init,
// B alone without a mask). Gradients reach B only through B ⊙ M, so entries outside M get exactly 0.
#pragma once

#include "model.h"
#include "safetensors.h"
#include "trainables.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lori {

enum class Method { LoriD, LoriS, Lora };
Method method_from_name(const std::string & name); // throws Error(EXIT_USAGE)
const char * method_name(Method m);

struct AdapterSpec {
    Method method = Method::LoriD;
    int64_t rank = 8;
    float alpha = 16.0f;
    uint64_t seed = 0;
    std::vector<int> modules = {MOD_Q, MOD_K, MOD_V, MOD_O, MOD_GATE, MOD_UP, MOD_DOWN};
};

struct AdapterTarget {
    int layer = 0, module = 0;
    int64_t in = 0, out = 0;
    ggml_tensor * a = nullptr;        // ne [in, r]  (row-major [r, in])
    ggml_tensor * b = nullptr;        // ne [r, out] (row-major [out, r])
    ggml_tensor * mask = nullptr;     // ne [r, out], LoRI-S only
    ggml_tensor * b_frozen = nullptr; // ne [r, out], LoRI-S with an init-B only
    ggml_tensor * grad_a = nullptr;   // gradient accumulators (trainable tensors only)
    ggml_tensor * grad_b = nullptr;
    std::vector<float> mask_host;     // [out, r]
    std::vector<float> init_b_host;   // [out, r]; zeros without an init file

    std::string name(const char * suffix) const; // "blk.3.attn_q.lora_b"
};

struct Adapter {
    AdapterSpec spec;
    std::string base_architecture = "llama"; // the base model's general.architecture, recorded in the metadata
    float scale = 1.0f; // alpha / rank
    bool train_a = false, train_b = false;
    std::vector<AdapterTarget> targets;
    ggml_tensor * loss_grad = nullptr; // d loss / d loss = 1 (gradient accumulator of the loss node)

    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buffer = nullptr;
    ggml_context * grad_ctx = nullptr;
    ggml_backend_buffer_t grad_buffer = nullptr;

    Adapter() = default;
    Adapter(const Adapter &) = delete;
    Adapter & operator=(const Adapter &) = delete;
    ~Adapter();

    const AdapterTarget * find(int layer, int module) const;
    int64_t trainable_params() const; // A (lora) + B entries that can change (LoRI-S: mask count)
    void zero_grads();
    GradientTargets gradient_targets() const; // B (and A for lora) with their accumulators; masks attached to B
    std::map<std::string, std::string> metadata() const; // adapter description for safetensors headers
};

struct AdapterSources {
    std::string mask;   // safetensors, "<target>.lora_b" [out, r], non-zero = trainable (LoRI-S)
    std::string init_b; // safetensors, "<target>.lora_b" [out, r] (and "<target>.lora_a" [r, in] for lora)
    bool trainable = true;
};

// Creates and uploads A (seeded or from init), B (zeros or init), masks. Throws Error(EXIT_INPUT/EXIT_USAGE).
void create_adapter(Adapter & adapter, const LlamaModel & model, const AdapterSpec & spec, const AdapterSources & sources,
                    ggml_backend_t backend);

// Loads B (and A when present) of a trained adapter file for evaluation: spec comes from its metadata unless
// overridden fields are given. Masks and init are not used.
void load_adapter_file(Adapter & adapter, const LlamaModel & model, const std::string & path, ggml_backend_t backend,
                       const AdapterSpec * override_spec);

std::vector<float> tensor_to_host(const ggml_tensor * t);
void tensor_from_host(ggml_tensor * t, const std::vector<float> & data);

// B to publish: entries outside the mask are copied from B_init bit for bit.
std::vector<float> published_b(const AdapterTarget & t);

// Writes "<target>.lora_b" [out, r] (and "<target>.lora_a" [r, in] for lora) with metadata.
void write_adapter_safetensors(const Adapter & adapter, const std::string & path,
                               std::map<std::string, std::string> extra_metadata);

} // namespace lori
