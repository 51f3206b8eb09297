#include "full_model.h"

#include "adapter.h"
#include "errors.h"

#include "gguf.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace lori {

FullModelGradients::~FullModelGradients() {
    if (buffer) ggml_backend_buffer_free(buffer);
    if (ctx) ggml_free(ctx);
}

void FullModelGradients::zero_grads() {
    ggml_backend_buffer_clear(buffer, 0);
    const float one = 1.0f;
    ggml_backend_tensor_set(targets.loss_grad, &one, 0, sizeof one);
}

int64_t FullModelGradients::trainable_params() const {
    int64_t n = 0;
    for (const Trainable & p : targets.params) n += ggml_nelements(p.value);
    return n;
}

namespace {

// rope_freqs are fixed frequency factors, not learned weights (and ggml's rope has no gradient for them).
bool is_learned_weight(const ggml_tensor * t, const LlamaModel & model) { return t != model.rope_freqs; }

} // namespace

void create_full_model_gradients(FullModelGradients & grads, const LlamaModel & model, ggml_backend_t backend) {
    size_t n = 0;
    for (ggml_tensor * t = ggml_get_first_tensor(model.ctx); t; t = ggml_get_next_tensor(model.ctx, t)) n++;
    ggml_init_params ip = {ggml_tensor_overhead() * (n + 1), nullptr, true};
    grads.ctx = ggml_init(ip);
    for (ggml_tensor * t = ggml_get_first_tensor(model.ctx); t; t = ggml_get_next_tensor(model.ctx, t)) {
        if (!is_learned_weight(t, model)) continue;
        if (t->type != GGML_TYPE_F32) fail(EXIT_USAGE, std::string("full fine-tuning needs F32 weights; ") + t->name + " is " + ggml_type_name(t->type));
        ggml_tensor * g = ggml_dup_tensor(grads.ctx, t);
        ggml_format_name(g, "grad.%s", t->name);
        grads.targets.params.push_back({t, g, nullptr});
    }
    grads.targets.loss_grad = ggml_new_tensor_1d(grads.ctx, GGML_TYPE_F32, 1);
    ggml_set_name(grads.targets.loss_grad, "grad.loss");
    grads.buffer = ggml_backend_alloc_ctx_tensors(grads.ctx, backend);
    if (!grads.buffer) fail(EXIT_INPUT, "cannot allocate backend memory for the gradients");
    grads.zero_grads();
}

std::map<std::string, std::string> full_model_metadata(const LlamaModel & model) {
    int64_t params = 0;
    for (ggml_tensor * t = ggml_get_first_tensor(model.ctx); t; t = ggml_get_next_tensor(model.ctx, t)) {
        if (is_learned_weight(t, model)) params += ggml_nelements(t);
    }
    return {{"format", "lori-full-model"}, {"method", "full"}, {"params", std::to_string(params)}};
}

namespace {

struct GgufDeleter {
    void operator()(gguf_context * g) const { gguf_free(g); }
};
struct CtxDeleter {
    void operator()(ggml_context * c) const { ggml_free(c); }
};

} // namespace

void write_model_gguf(const LlamaModel & model, const std::string & path, const std::map<std::string, std::string> & extra) {
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/&meta_raw};
    std::unique_ptr<gguf_context, GgufDeleter> src(gguf_init_from_file(model.path.c_str(), gp));
    if (!src) fail(EXIT_INPUT, model.path + ": cannot reread the base model");
    std::unique_ptr<ggml_context, CtxDeleter> meta(meta_raw);

    std::unique_ptr<gguf_context, GgufDeleter> dst(gguf_init_empty());
    gguf_set_kv(dst.get(), src.get());
    if (gguf_find_key(dst.get(), "general.file_type") >= 0) gguf_set_val_u32(dst.get(), "general.file_type", 0); // all F32
    for (const auto & [k, v] : extra) gguf_set_val_str(dst.get(), ("lori.training." + k).c_str(), v.c_str());

    const int64_t n = gguf_get_n_tensors(src.get());
    ggml_init_params ip = {ggml_tensor_overhead() * size_t(n + 1), nullptr, true};
    std::unique_ptr<ggml_context, CtxDeleter> out_ctx(ggml_init(ip));
    std::vector<std::vector<uint8_t>> data(static_cast<size_t>(n));
    FILE * f = std::fopen(model.path.c_str(), "rb");
    if (!f) fail(EXIT_INPUT, model.path + ": " + std::strerror(errno));
    std::unique_ptr<FILE, int (*)(FILE *)> guard(f, std::fclose);
    const size_t data_offset = gguf_get_data_offset(src.get());
    for (int64_t i = 0; i < n; i++) {
        const char * name = gguf_get_tensor_name(src.get(), i);
        const ggml_tensor * file_t = ggml_get_tensor(meta.get(), name);
        const ggml_tensor * live = ggml_get_tensor(model.ctx, name);
        ggml_tensor * t = ggml_new_tensor(out_ctx.get(), live ? GGML_TYPE_F32 : file_t->type, ggml_n_dims(file_t), file_t->ne);
        ggml_set_name(t, name);
        std::vector<uint8_t> & bytes = data[size_t(i)];
        bytes.resize(ggml_nbytes(t));
        if (live) {
            const std::vector<float> values = tensor_to_host(live);
            std::memcpy(bytes.data(), values.data(), bytes.size());
        } else {
            const size_t off = data_offset + gguf_get_tensor_offset(src.get(), i);
            if (fseeko(f, off_t(off), SEEK_SET) != 0 || std::fread(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
                fail(EXIT_INPUT, model.path + ": truncated file while copying " + name);
            }
        }
        gguf_add_tensor(dst.get(), t);
        gguf_set_tensor_data(dst.get(), name, bytes.data());
    }
    if (!gguf_write_to_file(dst.get(), path.c_str(), false)) fail(EXIT_INPUT, "cannot write " + path);
}

} // namespace lori
