#include "adapter.h"

#include "errors.h"
#include "io.h"
#include "philox.h"

#include <cstring>

namespace lori {

Method method_from_name(const std::string & name) {
    if (name == "lori-d") return Method::LoriD;
    if (name == "lori-s") return Method::LoriS;
    if (name == "lora") return Method::Lora;
    fail(EXIT_USAGE, "config: \"method\" must be \"lori-d\", \"lori-s\" or \"lora\" (got \"" + name + "\")");
}

const char * method_name(Method m) {
    switch (m) {
        case Method::LoriD: return "lori-d";
        case Method::LoriS: return "lori-s";
        case Method::Lora: return "lora";
    }
    return "?";
}

std::string AdapterTarget::name(const char * suffix) const {
    return "blk." + std::to_string(layer) + "." + module_gguf_name(module) + "." + suffix;
}

Adapter::~Adapter() {
    if (grad_buffer) ggml_backend_buffer_free(grad_buffer);
    if (grad_ctx) ggml_free(grad_ctx);
    if (buffer) ggml_backend_buffer_free(buffer);
    if (ctx) ggml_free(ctx);
}

const AdapterTarget * Adapter::find(int layer, int module) const {
    for (const auto & t : targets) {
        if (t.layer == layer && t.module == module) return &t;
    }
    return nullptr;
}

int64_t Adapter::trainable_params() const {
    int64_t n = 0;
    for (const auto & t : targets) {
        if (train_a) n += t.in * spec.rank;
        if (train_b) {
            if (t.mask) {
                for (float m : t.mask_host) n += m != 0.0f ? 1 : 0;
            } else {
                n += t.out * spec.rank;
            }
        }
    }
    return n;
}

void Adapter::zero_grads() {
    if (grad_buffer) ggml_backend_buffer_clear(grad_buffer, 0);
    if (loss_grad) {
        const float one = 1.0f;
        ggml_backend_tensor_set(loss_grad, &one, 0, sizeof one);
    }
}

GradientTargets Adapter::gradient_targets() const {
    GradientTargets g;
    for (const AdapterTarget & t : targets) {
        if (t.grad_b) g.params.push_back({t.b, t.grad_b, t.mask ? &t.mask_host : nullptr});
        if (t.grad_a) g.params.push_back({t.a, t.grad_a, nullptr});
    }
    g.loss_grad = loss_grad;
    return g;
}

std::map<std::string, std::string> Adapter::metadata() const {
    std::string mods;
    for (int m : spec.modules) mods += std::string(mods.empty() ? "" : ",") + module_short_name(m);
    char alpha[32];
    std::snprintf(alpha, sizeof alpha, "%.9g", double(spec.alpha));
    return {
        {"format", "lori-adapter"},
        {"method", method_name(spec.method)},
        {"rank", std::to_string(spec.rank)},
        {"alpha", alpha},
        {"seed", std::to_string(spec.seed)},
        {"targets", mods},
        {"a_generator", "philox4x32-10"},
        {"base_architecture", base_architecture},
        {"row_order", "gguf"},
    };
}

std::vector<float> tensor_to_host(const ggml_tensor * t) {
    std::vector<float> out(size_t(ggml_nelements(t)));
    ggml_backend_tensor_get(t, out.data(), 0, out.size() * sizeof(float));
    return out;
}

void tensor_from_host(ggml_tensor * t, const std::vector<float> & data) {
    if (int64_t(data.size()) != ggml_nelements(t)) fail(EXIT_INTERNAL, std::string("size mismatch uploading ") + t->name);
    ggml_backend_tensor_set(t, data.data(), 0, data.size() * sizeof(float));
}

std::vector<float> published_b(const AdapterTarget & t) {
    std::vector<float> b = tensor_to_host(t.b);
    if (t.mask) {
        for (size_t i = 0; i < b.size(); i++) {
            if (t.mask_host[i] == 0.0f) b[i] = t.init_b_host[i];
        }
    }
    return b;
}

static std::vector<float> take(const StFile & file, const std::string & path, const std::string & name,
                               std::vector<int64_t> shape, bool required) {
    const StTensor * t = file.find(name);
    if (!t) {
        if (required) fail(EXIT_INPUT, path + ": tensor " + name + " is missing");
        return {};
    }
    if (t->shape != shape) {
        fail(EXIT_INPUT, path + ": tensor " + name + " has shape [" + std::to_string(t->shape.size() > 0 ? t->shape[0] : 0) +
                             ", " + std::to_string(t->shape.size() > 1 ? t->shape[1] : 0) + "], expected [" +
                             std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + "]");
    }
    return t->to_f32();
}

static void allocate(Adapter & ad, const LlamaModel & model, const AdapterSpec & spec, bool with_mask, bool with_frozen,
                     ggml_backend_t backend) {
    ad.spec = spec;
    ad.base_architecture = model.hp.arch;
    ad.scale = spec.alpha / float(spec.rank);
    const size_t n_tensors = size_t(model.hp.n_layer) * spec.modules.size() * 4 + 4;
    ggml_init_params ip = {ggml_tensor_overhead() * n_tensors, nullptr, true};
    ad.ctx = ggml_init(ip);
    ggml_init_params gp = {ggml_tensor_overhead() * n_tensors, nullptr, true};
    ad.grad_ctx = ggml_init(gp);
    for (int64_t il = 0; il < model.hp.n_layer; il++) {
        for (int m : spec.modules) {
            AdapterTarget t;
            t.layer = int(il);
            t.module = m;
            t.in = model.layers[size_t(il)].w[m]->ne[0];
            t.out = model.layers[size_t(il)].w[m]->ne[1];
            t.a = ggml_new_tensor_2d(ad.ctx, GGML_TYPE_F32, t.in, spec.rank);
            ggml_set_name(t.a, t.name("lora_a").c_str());
            t.b = ggml_new_tensor_2d(ad.ctx, GGML_TYPE_F32, spec.rank, t.out);
            ggml_set_name(t.b, t.name("lora_b").c_str());
            if (with_mask) {
                t.mask = ggml_new_tensor_2d(ad.ctx, GGML_TYPE_F32, spec.rank, t.out);
                ggml_set_name(t.mask, t.name("lora_mask").c_str());
            }
            if (with_frozen) {
                t.b_frozen = ggml_new_tensor_2d(ad.ctx, GGML_TYPE_F32, spec.rank, t.out);
                ggml_set_name(t.b_frozen, t.name("lora_b_frozen").c_str());
            }
            if (ad.train_a) {
                t.grad_a = ggml_dup_tensor(ad.grad_ctx, t.a);
                ggml_format_name(t.grad_a, "grad.%s", t.a->name);
            }
            if (ad.train_b) {
                t.grad_b = ggml_dup_tensor(ad.grad_ctx, t.b);
                ggml_format_name(t.grad_b, "grad.%s", t.b->name);
            }
            ad.targets.push_back(std::move(t));
        }
    }
    ad.buffer = ggml_backend_alloc_ctx_tensors(ad.ctx, backend);
    if (!ad.buffer) fail(EXIT_INPUT, "cannot allocate backend memory for the adapter");
    if (ad.train_a || ad.train_b) {
        ad.loss_grad = ggml_new_tensor_1d(ad.grad_ctx, GGML_TYPE_F32, 1);
        ggml_set_name(ad.loss_grad, "grad.loss");
        ad.grad_buffer = ggml_backend_alloc_ctx_tensors(ad.grad_ctx, backend);
        if (!ad.grad_buffer) fail(EXIT_INPUT, "cannot allocate backend memory for the gradients");
        ad.zero_grads();
    }
}

static void upload_seeded_a(AdapterTarget & t, const AdapterSpec & spec) {
    std::vector<float> a(size_t(t.in * spec.rank));
    seeded_a_fill(a.data(), spec.seed, uint32_t(t.layer), uint32_t(t.module), spec.rank, t.in);
    tensor_from_host(t.a, a);
}

void create_adapter(Adapter & ad, const LlamaModel & model, const AdapterSpec & spec, const AdapterSources & src,
                    ggml_backend_t backend) {
    if (spec.rank <= 0) fail(EXIT_USAGE, "config: \"rank\" must be positive");
    if (spec.modules.empty()) fail(EXIT_USAGE, "config: \"targets\" must name at least one projection");
    const bool masked = spec.method == Method::LoriS;
    if (masked && src.mask.empty()) fail(EXIT_USAGE, "config: method lori-s needs \"mask\" (a safetensors file)");
    if (!masked && !src.mask.empty()) fail(EXIT_USAGE, "config: \"mask\" is only used by method lori-s");
    ad.train_b = src.trainable;
    ad.train_a = src.trainable && spec.method == Method::Lora;
    StFile mask_file, init_file;
    if (masked) mask_file = st_read(src.mask);
    if (!src.init_b.empty()) init_file = st_read(src.init_b);
    allocate(ad, model, spec, masked, masked && !src.init_b.empty(), backend);
    for (AdapterTarget & t : ad.targets) {
        const std::string bname = t.name("lora_b");
        t.init_b_host.assign(size_t(t.out * spec.rank), 0.0f);
        if (!src.init_b.empty()) {
            std::vector<float> init = take(init_file, src.init_b, bname, {t.out, spec.rank}, false);
            if (!init.empty()) t.init_b_host = std::move(init);
        }
        tensor_from_host(t.b, t.init_b_host);
        std::vector<float> a_init;
        if (!src.init_b.empty() && spec.method == Method::Lora) a_init = take(init_file, src.init_b, t.name("lora_a"), {spec.rank, t.in}, false);
        if (!a_init.empty()) {
            tensor_from_host(t.a, a_init);
        } else {
            upload_seeded_a(t, spec);
        }
        if (masked) {
            t.mask_host = take(mask_file, src.mask, bname, {t.out, spec.rank}, true);
            for (float & m : t.mask_host) m = m != 0.0f ? 1.0f : 0.0f;
            tensor_from_host(t.mask, t.mask_host);
            if (t.b_frozen) {
                std::vector<float> frozen(t.init_b_host.size());
                for (size_t i = 0; i < frozen.size(); i++) frozen[i] = t.mask_host[i] != 0.0f ? 0.0f : t.init_b_host[i];
                tensor_from_host(t.b_frozen, frozen);
            }
        }
    }
}

void load_adapter_file(Adapter & ad, const LlamaModel & model, const std::string & path, ggml_backend_t backend,
                       const AdapterSpec * override_spec) {
    const StFile file = st_read(path);
    AdapterSpec spec;
    if (override_spec) {
        spec = *override_spec;
    } else {
        auto meta = [&](const char * key) {
            auto it = file.metadata.find(key);
            if (it == file.metadata.end()) fail(EXIT_INPUT, path + ": metadata \"" + key + "\" is missing");
            return it->second;
        };
        spec.method = method_from_name(meta("method"));
        spec.rank = std::stoll(meta("rank"));
        spec.alpha = std::stof(meta("alpha"));
        spec.seed = std::stoull(meta("seed"));
        spec.modules.clear();
        std::string mods = meta("targets");
        size_t start = 0;
        while (start <= mods.size()) {
            const size_t comma = mods.find(',', start);
            const std::string m = mods.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            const int id = module_from_short_name(m);
            if (id < 0) fail(EXIT_INPUT, path + ": unknown target \"" + m + "\" in metadata");
            spec.modules.push_back(id);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    ad.train_a = ad.train_b = false;
    allocate(ad, model, spec, false, false, backend);
    for (AdapterTarget & t : ad.targets) {
        std::vector<float> b = take(file, path, t.name("lora_b"), {t.out, spec.rank}, true);
        tensor_from_host(t.b, b);
        std::vector<float> a = take(file, path, t.name("lora_a"), {spec.rank, t.in}, false);
        if (!a.empty()) {
            tensor_from_host(t.a, a);
        } else {
            upload_seeded_a(t, spec);
        }
    }
}

void write_adapter_safetensors(const Adapter & ad, const std::string & path, std::map<std::string, std::string> extra) {
    std::map<std::string, std::string> meta = ad.metadata();
    for (auto & [k, v] : extra) meta[k] = v;
    std::vector<std::vector<float>> keep;
    keep.reserve(ad.targets.size() * 2);
    std::vector<StWriteTensor> tensors;
    for (const AdapterTarget & t : ad.targets) {
        keep.push_back(published_b(t));
        tensors.push_back({t.name("lora_b"), {t.out, ad.spec.rank}, keep.back().data()});
        if (ad.spec.method == Method::Lora) {
            keep.push_back(tensor_to_host(t.a));
            tensors.push_back({t.name("lora_a"), {ad.spec.rank, t.in}, keep.back().data()});
        }
    }
    st_write(path, meta, tensors);
}

} // namespace lori
