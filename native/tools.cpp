// Small modes for tests: "seeded-a" (seeded A values for given indices) and "make-model" (a random tiny llama
// GGUF, F32/F16/Q8_0/Q4_K, for gradient checks without a downloaded model).
#include "errors.h"
#include "io.h"
#include "model.h"
#include "modes.h"
#include "philox.h"

#include "gguf.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

namespace lori {

int run_seeded_a(const Config & config) {
    const json::Value & queries = config.value("queries");
    config.reject_unknown_keys();
    if (queries.type != json::Value::Array) fail(EXIT_USAGE, "config: \"queries\" must be an array");
    const auto kat = philox4x32_10({0, 0, 0, 0}, {0, 0});
    const bool kat_ok = kat[0] == 0x6627e8d5u && kat[1] == 0xe169c58du && kat[2] == 0xbc57ac4cu && kat[3] == 0x9b00dbd8u;
    emit(json::Obj().add("event", "start").add("mode", "seeded-a").add("philox_kat_ok", kat_ok));
    auto integer = [](const json::Value & q, const char * key) -> uint64_t {
        const json::Value * v = q.get(key);
        if (v && v->type == json::Value::Number && v->number >= 0 && v->number == std::floor(v->number) && v->number <= 9007199254740991.0) return uint64_t(v->number);
        if (v && v->type == json::Value::String) return std::stoull(v->string, nullptr, 0);
        fail(EXIT_USAGE, std::string("seeded-a query: \"") + key + "\" must be a non-negative integer");
    };
    for (const json::Value & q : queries.array) {
        const uint64_t seed = integer(q, "seed");
        int module = -1;
        const json::Value * m = q.get("module");
        if (m && m->type == json::Value::String) {
            std::string name = m->string; // "q" or the PEFT name "q_proj"
            if (name.size() > 5 && name.compare(name.size() - 5, 5, "_proj") == 0) name.resize(name.size() - 5);
            module = module_from_short_name(name);
        }
        else if (m && m->type == json::Value::Number) module = int(m->number);
        if (module < 0 || module >= MOD_COUNT) fail(EXIT_USAGE, "seeded-a query: bad \"module\"");
        const json::Value * inf = q.get("in_features") ? q.get("in_features") : q.get("inFeatures");
        if (!inf || inf->type != json::Value::Number || inf->number < 1) fail(EXIT_USAGE, "seeded-a query: \"in_features\" is required");
        const uint64_t layer = integer(q, "layer"), row = integer(q, "row"), col = integer(q, "col");
        const float v = seeded_a(seed, uint32_t(layer), uint32_t(module), uint32_t(row), uint32_t(col), int64_t(inf->number));
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08x", bits);
        emit(json::Obj().add("event", "seeded_a").add("seed", std::to_string(seed))
                 .add("layer", int64_t(layer)).add("module", module_short_name(module)).add("row", int64_t(row))
                 .add("col", int64_t(col)).add("in_features", int64_t(inf->number)).add("bits", hex).add("value", double(v)));
    }
    emit(json::Obj().add("event", "done").add("mode", "seeded-a").add("count", int64_t(queries.array.size())));
    return EXIT_OK;
}

int run_make_model(const Config & config) {
    const std::string out = config.str("output");
    const int64_t n_vocab = config.integer("n_vocab", 64), n_embd = config.integer("n_embd", 32);
    const int64_t n_layer = config.integer("n_layer", 2), n_head = config.integer("n_head", 4);
    const int64_t n_head_kv = config.integer("n_head_kv", 2), n_ff = config.integer("n_ff", 48);
    const int64_t n_ctx = config.integer("context_length", 256);
    const bool tied = config.boolean("tied_embeddings", false);
    const uint64_t seed = config.seed("seed", 1);
    const std::string wt = config.str("weight_type", "f32");
    config.reject_unknown_keys();
    ggml_type type = GGML_TYPE_F32;
    if (wt == "f16") type = GGML_TYPE_F16;
    else if (wt == "q8_0") type = GGML_TYPE_Q8_0;
    else if (wt == "q4_k") type = GGML_TYPE_Q4_K;
    else if (wt != "f32") fail(EXIT_USAGE, "config: \"weight_type\" must be f32, f16, q8_0 or q4_k");
    if (n_embd % n_head != 0 || n_head % n_head_kv != 0) fail(EXIT_USAGE, "config: n_embd % n_head and n_head % n_head_kv must be 0");
    const int64_t hd = n_embd / n_head;

    std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_empty(), gguf_free);
    gguf_set_val_str(g.get(), "general.architecture", "llama");
    gguf_set_val_str(g.get(), "general.name", "lori-tiny-random");
    gguf_set_val_u32(g.get(), "llama.context_length", uint32_t(n_ctx));
    gguf_set_val_u32(g.get(), "llama.embedding_length", uint32_t(n_embd));
    gguf_set_val_u32(g.get(), "llama.block_count", uint32_t(n_layer));
    gguf_set_val_u32(g.get(), "llama.feed_forward_length", uint32_t(n_ff));
    gguf_set_val_u32(g.get(), "llama.attention.head_count", uint32_t(n_head));
    gguf_set_val_u32(g.get(), "llama.attention.head_count_kv", uint32_t(n_head_kv));
    gguf_set_val_u32(g.get(), "llama.rope.dimension_count", uint32_t(hd));
    gguf_set_val_u32(g.get(), "llama.vocab_size", uint32_t(n_vocab));
    gguf_set_val_f32(g.get(), "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_f32(g.get(), "llama.rope.freq_base", 10000.0f);

    struct Spec { std::string name; int64_t ne0, ne1; bool norm; };
    std::vector<Spec> specs = {{"token_embd.weight", n_embd, n_vocab, false}, {"output_norm.weight", n_embd, 1, true}};
    if (!tied) specs.push_back({"output.weight", n_embd, n_vocab, false});
    const int64_t q_out = n_embd, kv_out = hd * n_head_kv;
    for (int64_t il = 0; il < n_layer; il++) {
        const std::string p = "blk." + std::to_string(il) + ".";
        specs.push_back({p + "attn_norm.weight", n_embd, 1, true});
        specs.push_back({p + "attn_q.weight", n_embd, q_out, false});
        specs.push_back({p + "attn_k.weight", n_embd, kv_out, false});
        specs.push_back({p + "attn_v.weight", n_embd, kv_out, false});
        specs.push_back({p + "attn_output.weight", q_out, n_embd, false});
        specs.push_back({p + "ffn_norm.weight", n_embd, 1, true});
        specs.push_back({p + "ffn_gate.weight", n_embd, n_ff, false});
        specs.push_back({p + "ffn_up.weight", n_embd, n_ff, false});
        specs.push_back({p + "ffn_down.weight", n_ff, n_embd, false});
    }
    size_t bytes = 0;
    for (const Spec & s : specs) bytes += size_t(s.ne0 * s.ne1) * sizeof(float) + ggml_tensor_overhead() + 256;
    ggml_init_params ip = {bytes, nullptr, false};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> ctx(ggml_init(ip), ggml_free);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::vector<float> data;
    for (const Spec & s : specs) {
        data.resize(size_t(s.ne0 * s.ne1));
        const float scale = s.norm ? 0.1f : (s.name == "token_embd.weight" ? 1.0f : std::sqrt(3.0f / float(s.ne0)));
        for (float & x : data) x = (s.norm ? 1.0f : 0.0f) + scale * uni(rng);
        ggml_type t = (s.norm || s.ne0 % ggml_blck_size(type) != 0) ? GGML_TYPE_F32 : type;
        ggml_tensor * tensor = s.norm ? ggml_new_tensor_1d(ctx.get(), t, s.ne0) : ggml_new_tensor_2d(ctx.get(), t, s.ne0, s.ne1);
        ggml_set_name(tensor, s.name.c_str());
        if (t == GGML_TYPE_F32) {
            std::memcpy(tensor->data, data.data(), data.size() * sizeof(float));
        } else {
            ggml_quantize_chunk(t, data.data(), tensor->data, 0, s.ne1, s.ne0, nullptr);
        }
        gguf_add_tensor(g.get(), tensor);
    }
    const std::string tmp = out + ".tmp";
    if (!gguf_write_to_file(g.get(), tmp.c_str(), false) || std::rename(tmp.c_str(), out.c_str()) != 0) fail(EXIT_INPUT, "cannot write " + out);
    emit(json::Obj().add("event", "done").add("mode", "make-model").add("output", out).add("weight_type", wt));
    return EXIT_OK;
}

} // namespace lori
