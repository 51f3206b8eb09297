// AdamW over a run's trainable tensors (an adapter's, or a whole model's), built by hand (ggml_opt_step_adamw) so the moments are ours to
// checkpoint. Per step: clip each tensor's accumulated gradient to norm <= grad_clip, then AdamW
// (weight decay 0 by default, constant LR). A zero gradient with zero moments leaves a parameter unchanged
// bit for bit (m = v = 0 -> update 0 / (0 + eps) = 0); masked B entries only ever see zero gradients.
#pragma once

#include "runner.h"
#include "trainables.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lori {

struct AdamWConfig {
    float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f, grad_clip = 1.0f;
};

class Optimizer {
public:
    // `identity` describes what is trained (adapter spec or full model); a checkpoint must match it to be loaded.
    Optimizer(const GradientTargets & targets, std::map<std::string, std::string> identity, ggml_backend_t backend,
              const AdamWConfig & config);
    ~Optimizer();
    Optimizer(const Optimizer &) = delete;
    Optimizer & operator=(const Optimizer &) = delete;

    void step(Runner & runner); // applies the accumulated gradients, then step_count() += 1
    int64_t step_count() const { return step_; }

    // Checkpoint = safetensors: "<param>", "<param>.adam_m", "<param>.adam_v"; metadata: identity + step + extra.
    void save(const std::string & path, const std::map<std::string, std::string> & extra) const;
    void load(const std::string & path); // throws Error(EXIT_USAGE) when the checkpoint is of another identity
    size_t graph_size() const { return graph_size_; }

private:
    struct Param { ggml_tensor * value, * grad, * m, * v; };
    std::map<std::string, std::string> identity_;
    AdamWConfig config_;
    std::vector<Param> params_;
    int64_t step_ = 0;
    ggml_context * ctx_ = nullptr;        // moments
    ggml_backend_buffer_t buffer_ = nullptr;
    ggml_context * graph_ctx_ = nullptr;  // the update graph
    ggml_cgraph * graph_ = nullptr;
    ggml_tensor * hparams_ = nullptr;     // F32 [7]: lr, beta1, beta2, eps, wd, 1/(1-beta1^t), 1/(1-beta2^t)
    size_t graph_size_ = 0;
};

} // namespace lori
