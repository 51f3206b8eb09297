// Mode "export-gguf": an adapter safetensors (lora_b, optional lora_a; A seeded otherwise) -> a llama.cpp GGUF
// LoRA: general.type "adapter", adapter.type "lora", adapter.lora.alpha FLOAT32 (another type aborts llama.cpp),
// tensors "<base>.weight.lora_a" ne [in, r] and "<base>.weight.lora_b" ne [r, out], F32. Only the base model's
// metadata and tensor shapes are read (no weights).
#include "adapter.h"
#include "errors.h"
#include "io.h"
#include "modes.h"
#include "philox.h"

#include "gguf.h"

#include <cstdio>
#include <cstring>
#include <memory>

namespace lori {

int run_export_gguf(const Config & config) {
    const std::string model_path = config.str("model"), adapter_path = config.str("adapter"), out = config.str("output");
    config.reject_unknown_keys();
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp = {true, &meta_raw};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> base(gguf_init_from_file(model_path.c_str(), gp), gguf_free);
    if (!base) fail(EXIT_INPUT, model_path + ": cannot read as GGUF");
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> meta(meta_raw, ggml_free);
    const int64_t arch_id = gguf_find_key(base.get(), "general.architecture");
    const std::string arch = arch_id >= 0 ? gguf_get_val_str(base.get(), arch_id) : "";
    if (!is_trainable_architecture(arch)) {
        fail(EXIT_INPUT, model_path + ": architecture \"" + arch + "\" is not supported (only \"llama\", \"qwen2\", \"qwen3\")");
    }

    const StFile file = st_read(adapter_path);
    auto meta_of = [&](const char * key) {
        auto it = file.metadata.find(key);
        if (it == file.metadata.end()) fail(EXIT_INPUT, adapter_path + ": metadata \"" + key + "\" is missing");
        return it->second;
    };
    // DoRA rescales every output row (W' = m (W + s B A) / ||W + s B A||): no GGUF LoRA expresses that.
    const auto method = file.metadata.find("method");
    if (method != file.metadata.end() && method->second == "dora") {
        fail(EXIT_INPUT, adapter_path + ": a DoRA adapter cannot be written as a GGUF LoRA; export it as a merged model");
    }
    const int64_t rank = std::stoll(meta_of("rank"));
    const float alpha = std::stof(meta_of("alpha"));
    const uint64_t seed = std::stoull(meta_of("seed"));

    struct Pair { std::string base_name; int layer, module; int64_t in, out; std::vector<float> a, b; };
    std::vector<Pair> pairs;
    for (const StTensor & t : file.tensors) {
        const std::string suffix = ".lora_b";
        if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        const std::string stem = t.name.substr(0, t.name.size() - suffix.size()); // blk.3.attn_q
        int layer = -1, module = -1;
        for (int m = 0; m < MOD_COUNT; m++) {
            const std::string tail = std::string(".") + module_gguf_name(m);
            if (stem.size() > tail.size() && stem.compare(stem.size() - tail.size(), tail.size(), tail) == 0 && stem.rfind("blk.", 0) == 0) {
                layer = std::stoi(stem.substr(4, stem.size() - tail.size() - 4));
                module = m;
            }
        }
        if (layer < 0) fail(EXIT_INPUT, adapter_path + ": unexpected tensor " + t.name);
        ggml_tensor * w = ggml_get_tensor(meta.get(), (stem + ".weight").c_str());
        if (!w) fail(EXIT_INPUT, model_path + ": has no tensor " + stem + ".weight");
        Pair p{stem + ".weight", layer, module, w->ne[0], w->ne[1], {}, t.to_f32()};
        if (t.shape != std::vector<int64_t>{p.out, rank}) fail(EXIT_INPUT, adapter_path + ": " + t.name + " has the wrong shape");
        if (const StTensor * a = file.find(stem + ".lora_a")) {
            if (a->shape != std::vector<int64_t>{rank, p.in}) fail(EXIT_INPUT, adapter_path + ": " + a->name + " has the wrong shape");
            p.a = a->to_f32();
        } else {
            p.a.resize(size_t(rank * p.in));
            seeded_a_fill(p.a.data(), seed, uint32_t(layer), uint32_t(module), rank, p.in);
        }
        pairs.push_back(std::move(p));
    }
    if (pairs.empty()) fail(EXIT_INPUT, adapter_path + ": no lora_b tensors");

    size_t bytes = 0;
    for (const Pair & p : pairs) bytes += (p.a.size() + p.b.size()) * sizeof(float) + 2 * ggml_tensor_overhead() + 64;
    ggml_init_params ip = {bytes + 1024, nullptr, false};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> ctx(ggml_init(ip), ggml_free);
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_empty(), gguf_free);
    gguf_set_val_str(g.get(), "general.architecture", arch.c_str()); // llama.cpp refuses an adapter of another arch
    gguf_set_val_str(g.get(), "general.type", "adapter");
    gguf_set_val_str(g.get(), "adapter.type", "lora");
    gguf_set_val_f32(g.get(), "adapter.lora.alpha", alpha);
    for (const Pair & p : pairs) {
        ggml_tensor * a = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, p.in, rank);
        ggml_tensor * b = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, rank, p.out);
        ggml_set_name(a, (p.base_name + ".lora_a").c_str());
        ggml_set_name(b, (p.base_name + ".lora_b").c_str());
        std::memcpy(a->data, p.a.data(), p.a.size() * sizeof(float));
        std::memcpy(b->data, p.b.data(), p.b.size() * sizeof(float));
        gguf_add_tensor(g.get(), a);
        gguf_add_tensor(g.get(), b);
    }
    const std::string tmp = out + ".tmp";
    if (!gguf_write_to_file(g.get(), tmp.c_str(), false) || std::rename(tmp.c_str(), out.c_str()) != 0) {
        fail(EXIT_INPUT, "cannot write " + out);
    }
    emit(json::Obj().add("event", "done").add("mode", "export-gguf").add("output", out).add("tensors", int64_t(pairs.size() * 2))
             .add("rank", rank).add("alpha", double(alpha)));
    return EXIT_OK;
}

} // namespace lori
