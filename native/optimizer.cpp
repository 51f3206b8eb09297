#include "optimizer.h"

#include "adapter.h"
#include "errors.h"
#include "safetensors.h"

#include <cfloat>
#include <cmath>

namespace lori {

Optimizer::Optimizer(const GradientTargets & targets, std::map<std::string, std::string> identity, ggml_backend_t backend,
                     const AdamWConfig & config)
    : identity_(std::move(identity)), config_(config) {
    ggml_init_params ip = {ggml_tensor_overhead() * (targets.params.size() * 2 + 2), nullptr, true};
    ctx_ = ggml_init(ip);
    for (const Trainable & p : targets.params) {
        ggml_tensor * value = p.value, * grad = p.grad;
        ggml_tensor * m = ggml_dup_tensor(ctx_, value);
        ggml_tensor * v = ggml_dup_tensor(ctx_, value);
        ggml_format_name(m, "%s.adam_m", value->name);
        ggml_format_name(v, "%s.adam_v", value->name);
        params_.push_back({value, grad, m, v});
    }
    buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    if (!buffer_) fail(EXIT_INPUT, "cannot allocate optimizer state");
    ggml_backend_buffer_clear(buffer_, 0);

    graph_size_ = 64 + params_.size() * 16;
    ggml_init_params gp = {ggml_tensor_overhead() * graph_size_ + ggml_graph_overhead_custom(graph_size_, false), nullptr, true};
    graph_ctx_ = ggml_init(gp);
    graph_ = ggml_new_graph_custom(graph_ctx_, graph_size_, false);
    hparams_ = ggml_new_tensor_1d(graph_ctx_, GGML_TYPE_F32, 7);
    ggml_set_input(hparams_);
    const float clip = config_.grad_clip;
    for (const Param & p : params_) {
        ggml_tensor * g = p.grad;
        if (clip > 0.0f) {
            // g * clip / max(||g||, clip): unchanged (exactly, for clip = 1) when the norm is within the limit
            ggml_tensor * norm = ggml_sqrt(graph_ctx_, ggml_sum(graph_ctx_, ggml_sqr(graph_ctx_, g)));
            ggml_tensor * denom = ggml_clamp(graph_ctx_, norm, clip, FLT_MAX);
            if (clip != 1.0f) denom = ggml_scale(graph_ctx_, denom, 1.0f / clip);
            g = ggml_div(graph_ctx_, g, denom);
        }
        ggml_build_forward_expand(graph_, ggml_opt_step_adamw(graph_ctx_, p.value, g, p.m, p.v, hparams_));
    }
}

Optimizer::~Optimizer() {
    if (graph_ctx_) ggml_free(graph_ctx_);
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
}

void Optimizer::step(Runner & runner) {
    const int64_t t = step_ + 1;
    const float h[7] = {
        config_.lr, config_.beta1, config_.beta2, config_.eps, config_.weight_decay,
        float(1.0 / (1.0 - std::pow(double(config_.beta1), double(t)))),
        float(1.0 / (1.0 - std::pow(double(config_.beta2), double(t)))),
    };
    runner.alloc(graph_);
    ggml_backend_tensor_set(hparams_, h, 0, sizeof h);
    runner.compute(graph_);
    step_ = t;
}

void Optimizer::save(const std::string & path, const std::map<std::string, std::string> & extra) const {
    std::map<std::string, std::string> meta = identity_;
    for (const auto & [k, v] : extra) meta[k] = v;
    meta["format"] = "lori-train-checkpoint";
    meta["step"] = std::to_string(step_);
    std::vector<std::vector<float>> keep;
    keep.reserve(params_.size() * 3);
    std::vector<StWriteTensor> tensors;
    for (const Param & p : params_) {
        for (ggml_tensor * t : {p.value, p.m, p.v}) {
            keep.push_back(tensor_to_host(t));
            tensors.push_back({t->name, {t->ne[1], t->ne[0]}, keep.back().data()});
        }
    }
    st_write(path, meta, tensors);
}

void Optimizer::load(const std::string & path) {
    const StFile file = st_read(path);
    auto it = file.metadata.find("format");
    if (it == file.metadata.end() || it->second != "lori-train-checkpoint") fail(EXIT_USAGE, path + " is not a lori-train checkpoint");
    for (const auto & [key, mine] : identity_) {
        if (key == "format") continue;
        auto theirs = file.metadata.find(key);
        if (theirs == file.metadata.end() || theirs->second != mine) {
            fail(EXIT_USAGE, "cannot resume from " + path + ": its " + key + " (" +
                                 (theirs == file.metadata.end() ? std::string("missing") : theirs->second) +
                                 ") differs from this run's (" + mine + ")");
        }
    }
    for (const Param & p : params_) {
        for (ggml_tensor * t : {p.value, p.m, p.v}) {
            const StTensor * s = file.find(t->name);
            if (!s || s->dtype != "F32" || s->numel() != ggml_nelements(t)) fail(EXIT_USAGE, path + ": tensor " + t->name + " missing or wrong shape");
            ggml_backend_tensor_set(t, s->data.data(), 0, s->data.size());
        }
    }
    step_ = std::stoll(file.metadata.at("step"));
}

} // namespace lori
