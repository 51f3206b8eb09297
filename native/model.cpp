#include "model.h"

#include "errors.h"

#include "gguf.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <unistd.h>

namespace lori {

static const char * SHORT_NAMES[MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char * GGUF_NAMES[MOD_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char * module_short_name(int m) { return SHORT_NAMES[m]; }
const char * module_gguf_name(int m) { return GGUF_NAMES[m]; }
int module_from_short_name(const std::string & name) {
    for (int m = 0; m < MOD_COUNT; m++) {
        if (name == SHORT_NAMES[m]) return m;
    }
    return -1;
}

bool is_trainable_architecture(const std::string & arch) { return arch == "llama" || arch == "qwen2" || arch == "qwen3"; }

LlamaModel::~LlamaModel() {
    if (buffer) ggml_backend_buffer_free(buffer);
    if (ctx) ggml_free(ctx);
}

int64_t LlamaModel::in_features(int m) const { return layers.at(0).w[m]->ne[0]; }
int64_t LlamaModel::out_features(int m) const { return layers.at(0).w[m]->ne[1]; }

namespace {

struct GgufDeleter {
    void operator()(gguf_context * g) const { gguf_free(g); }
};
struct CtxDeleter {
    void operator()(ggml_context * c) const { ggml_free(c); }
};

bool keep_type_on_cpu(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: case GGML_TYPE_F16:
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
            return true;
        default:
            return false;
    }
}

bool convertible_to_f32(ggml_type t) {
    return keep_type_on_cpu(t) || t == GGML_TYPE_BF16;
}

class Reader {
public:
    Reader(const std::string & path, gguf_context * g) : path_(path), g_(g) {}

    int64_t key(const char * name) const { return gguf_find_key(g_, name); }

    uint32_t u32(const std::string & name, int64_t def, bool required) const {
        const int64_t id = key(name.c_str());
        if (id < 0) {
            if (required) fail(EXIT_INPUT, path_ + ": missing metadata " + name);
            return uint32_t(def);
        }
        switch (gguf_get_kv_type(g_, id)) {
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(g_, id);
            case GGUF_TYPE_INT32: return uint32_t(gguf_get_val_i32(g_, id));
            case GGUF_TYPE_UINT64: return uint32_t(gguf_get_val_u64(g_, id));
            case GGUF_TYPE_INT64: return uint32_t(gguf_get_val_i64(g_, id));
            case GGUF_TYPE_UINT16: return gguf_get_val_u16(g_, id);
            case GGUF_TYPE_ARRAY:
                fail(EXIT_INPUT, path_ + ": per-layer " + name + " arrays are not supported");
            default:
                fail(EXIT_INPUT, path_ + ": metadata " + name + " has an unexpected type");
        }
    }

    float f32(const std::string & name, float def) const {
        const int64_t id = key(name.c_str());
        if (id < 0) return def;
        switch (gguf_get_kv_type(g_, id)) {
            case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(g_, id);
            case GGUF_TYPE_FLOAT64: return float(gguf_get_val_f64(g_, id));
            default: fail(EXIT_INPUT, path_ + ": metadata " + name + " is not a float");
        }
    }

    std::string str(const std::string & name, const std::string & def) const {
        const int64_t id = key(name.c_str());
        if (id < 0 || gguf_get_kv_type(g_, id) != GGUF_TYPE_STRING) return def;
        return gguf_get_val_str(g_, id);
    }

private:
    std::string path_;
    gguf_context * g_;
};

} // namespace

FrozenWeights frozen_weights_from_name(const std::string & name) {
    if (name == "auto") return FrozenWeights::Auto;
    if (name == "native") return FrozenWeights::Native;
    if (name == "f32") return FrozenWeights::F32;
    fail(EXIT_USAGE, "config: \"frozen_weights\" must be \"auto\", \"native\" or \"f32\"");
}

void load_llama_model(LlamaModel & model, const std::string & path, ggml_backend_t backend, bool on_gpu, FrozenWeights policy) {
    if (on_gpu && policy == FrozenWeights::Native) fail(EXIT_USAGE, "config: frozen_weights \"native\" is CPU-only (CUDA's OUT_PROD is F32-only)");
    model.path = path;
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/&meta_raw};
    std::unique_ptr<gguf_context, GgufDeleter> g(gguf_init_from_file(path.c_str(), gp));
    if (!g) fail(EXIT_INPUT, path + ": cannot read as GGUF (missing file or not a GGUF model)");
    std::unique_ptr<ggml_context, CtxDeleter> meta(meta_raw);
    Reader r(path, g.get());

    const std::string arch = r.str("general.architecture", "");
    if (!is_trainable_architecture(arch)) {
        fail(EXIT_INPUT, path + ": architecture \"" + arch + "\" is not supported by the trainer (only \"llama\", \"qwen2\", \"qwen3\")");
    }
    const std::string type = r.str("general.type", "model");
    if (type != "model") fail(EXIT_INPUT, path + ": general.type is \"" + type + "\", not a base model");
    const std::string k = arch + ".";
    if (r.u32(k + "expert_count", 0, false) > 0) fail(EXIT_INPUT, path + ": mixture-of-experts " + arch + " models are not supported");

    LlamaHParams & hp = model.hp;
    hp.arch = arch;
    // llama.cpp's llama_model_rope_type: LLM_ARCH_LLAMA -> NORM, LLM_ARCH_QWEN2 / QWEN3 -> NEOX.
    hp.rope_mode = arch == "llama" ? ROPE_NORM : ROPE_NEOX;
    hp.n_embd = r.u32(k + "embedding_length", 0, true);
    hp.n_layer = r.u32(k + "block_count", 0, true);
    hp.n_ff = r.u32(k + "feed_forward_length", 0, true);
    hp.n_head = r.u32(k + "attention.head_count", 0, true);
    hp.n_head_kv = r.u32(k + "attention.head_count_kv", hp.n_head, false);
    hp.n_ctx_train = r.u32(k + "context_length", 2048, false);
    hp.head_dim = r.u32(k + "attention.key_length", hp.n_embd / std::max<int64_t>(1, hp.n_head), false);
    if (r.u32(k + "attention.value_length", hp.head_dim, false) != hp.head_dim) {
        fail(EXIT_INPUT, path + ": different key and value head sizes are not supported");
    }
    hp.n_rot = r.u32(k + "rope.dimension_count", hp.head_dim, false);
    if (hp.n_rot != hp.head_dim) fail(EXIT_INPUT, path + ": partial rotary embeddings are not supported for " + arch);
    hp.rms_eps = r.f32(k + "attention.layer_norm_rms_epsilon", 1e-5f);
    hp.rope_freq_base = r.f32(k + "rope.freq_base", 10000.0f);
    const std::string scaling = r.str(k + "rope.scaling.type", "none");
    const float factor = r.f32(k + "rope.scaling.factor", 0.0f);
    if (scaling == "linear" && factor > 0.0f) {
        hp.rope_freq_scale = 1.0f / factor;
    } else if (scaling != "none" && scaling != "linear" && factor > 1.0f) {
        fail(EXIT_INPUT, path + ": rope scaling \"" + scaling + "\" is not supported by the trainer");
    }
    if (hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_head % hp.n_head_kv != 0) fail(EXIT_INPUT, path + ": invalid head counts");
    if (gguf_find_tensor(g.get(), "blk.0.attn_qkv.weight") >= 0) fail(EXIT_INPUT, path + ": fused attn_qkv weights are not supported");

    // Select the tensors we need and decide their in-memory type.
    struct Item { std::string name; ggml_tensor ** slot; bool required; };
    std::vector<Item> items;
    model.layers.resize(size_t(hp.n_layer));
    items.push_back({"token_embd.weight", &model.tok_embd, true});
    items.push_back({"output_norm.weight", &model.output_norm, true});
    items.push_back({"output.weight", &model.output, false});
    if (arch == "qwen2") items.push_back({"output.bias", &model.output_b, false}); // only qwen2's graph adds it
    items.push_back({"rope_freqs.weight", &model.rope_freqs, false});
    for (int64_t il = 0; il < hp.n_layer; il++) {
        LlamaLayer & L = model.layers[size_t(il)];
        const std::string p = "blk." + std::to_string(il) + ".";
        items.push_back({p + "attn_norm.weight", &L.attn_norm, true});
        items.push_back({p + "ffn_norm.weight", &L.ffn_norm, true});
        if (arch == "qwen3") { // llama.cpp's qwen3 loader requires both
            items.push_back({p + "attn_q_norm.weight", &L.q_norm, true});
            items.push_back({p + "attn_k_norm.weight", &L.k_norm, true});
        }
        for (int m = 0; m < MOD_COUNT; m++) {
            items.push_back({p + GGUF_NAMES[m] + ".weight", &L.w[m], true});
            items.push_back({p + GGUF_NAMES[m] + ".bias", &L.bias[m], false});
        }
    }

    ggml_init_params ip = {/*mem_size =*/ggml_tensor_overhead() * (items.size() + 8), /*mem_buffer =*/nullptr, /*no_alloc =*/true};
    model.ctx = ggml_init(ip);
    struct Load { int64_t tid; ggml_tensor * src; ggml_tensor * dst; };
    bool dequantize_to_f32 = on_gpu || policy == FrozenWeights::F32;
    if (!on_gpu && policy == FrozenWeights::Auto) {
        double f32_bytes = 0.0;
        for (const Item & it : items) {
            if (ggml_tensor * t = ggml_get_tensor(meta.get(), it.name.c_str())) f32_bytes += double(ggml_nelements(t)) * 4.0;
        }
        const double ram = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
        dequantize_to_f32 = ram <= 0.0 || f32_bytes <= 0.4 * ram;
    }
    std::vector<Load> loads;
    std::set<std::string> types, file_types;
    for (const Item & it : items) {
        const int64_t tid = gguf_find_tensor(g.get(), it.name.c_str());
        if (tid < 0) {
            if (it.required) fail(EXIT_INPUT, path + ": tensor " + it.name + " is missing");
            continue;
        }
        ggml_tensor * src = ggml_get_tensor(meta.get(), it.name.c_str());
        ggml_type t = src->type;
        file_types.insert(ggml_type_name(t));
        if (!convertible_to_f32(t)) {
            fail(EXIT_INPUT, path + ": tensor " + it.name + " has type " + ggml_type_name(t) +
                                 " (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)");
        }
        if (t == GGML_TYPE_BF16 || (dequantize_to_f32 && t != GGML_TYPE_F32)) t = GGML_TYPE_F32;
        ggml_tensor * dst = ggml_new_tensor(model.ctx, t, ggml_n_dims(src), src->ne);
        ggml_set_name(dst, it.name.c_str());
        *it.slot = dst;
        types.insert(ggml_type_name(t));
        loads.push_back({tid, src, dst});
    }
    if (!model.output) model.output = model.tok_embd; // tied embeddings
    hp.n_vocab = model.tok_embd->ne[1];
    if (model.tok_embd->ne[0] != hp.n_embd || model.output->ne[1] != hp.n_vocab) fail(EXIT_INPUT, path + ": embedding shapes do not match");
    for (const auto & t : types) model.weight_types += (model.weight_types.empty() ? "" : ",") + t;
    for (const auto & t : file_types) model.file_weight_types += (model.file_weight_types.empty() ? "" : ",") + t;

    model.buffer = ggml_backend_alloc_ctx_tensors(model.ctx, backend);
    if (!model.buffer) fail(EXIT_INPUT, path + ": cannot allocate backend memory for the model");
    ggml_backend_buffer_set_usage(model.buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);

    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) fail(EXIT_INPUT, path + ": " + std::strerror(errno));
    std::unique_ptr<FILE, int (*)(FILE *)> guard(f, std::fclose);
    const size_t data_offset = gguf_get_data_offset(g.get());
    std::vector<uint8_t> raw;
    std::vector<float> f32;
    for (const Load & l : loads) {
        const size_t nbytes = ggml_nbytes(l.src);
        raw.resize(nbytes);
        const size_t off = data_offset + gguf_get_tensor_offset(g.get(), l.tid);
        if (fseeko(f, off_t(off), SEEK_SET) != 0 || std::fread(raw.data(), 1, nbytes, f) != nbytes) {
            fail(EXIT_INPUT, path + ": truncated file while reading " + std::string(l.dst->name));
        }
        if (l.dst->type == l.src->type) {
            ggml_backend_tensor_set(l.dst, raw.data(), 0, nbytes);
        } else {
            const int64_t n = ggml_nelements(l.src);
            f32.resize(size_t(n));
            ggml_get_type_traits(l.src->type)->to_float(raw.data(), f32.data(), n);
            ggml_backend_tensor_set(l.dst, f32.data(), 0, size_t(n) * sizeof(float));
        }
    }
}

} // namespace lori
