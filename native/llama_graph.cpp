#include "llama_graph.h"

#include "errors.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace lori {

LlamaGraph::~LlamaGraph() {
    if (ctx) ggml_free(ctx);
}

namespace {

struct Builder {
    ggml_context * ctx;
    const LlamaModel & model;
    const Adapter * adapter;

    // W x (+ s * B_eff (A x)) (+ bias): llama.cpp's build_lora_mm followed by the bias add.
    ggml_tensor * linear(int il, int module, ggml_tensor * x) {
        const LlamaLayer & L = model.layers[size_t(il)];
        ggml_tensor * y = ggml_mul_mat(ctx, L.w[module], x);
        if (adapter) {
            if (const AdapterTarget * t = adapter->find(il, module)) {
                ggml_tensor * b = t->b;
                if (t->mask) b = ggml_mul(ctx, b, t->mask);
                if (t->b_frozen) b = ggml_add(ctx, b, t->b_frozen);
                ggml_tensor * ab = ggml_mul_mat(ctx, b, ggml_mul_mat(ctx, t->a, x));
                ab = ggml_scale(ctx, ab, adapter->scale);
                y = ggml_add(ctx, y, ab);
            }
        }
        if (L.bias[module]) y = ggml_add(ctx, y, L.bias[module]);
        return y;
    }

    ggml_tensor * rope(ggml_tensor * x, ggml_tensor * pos) {
        const LlamaHParams & hp = model.hp;
        return ggml_rope_ext(ctx, x, pos, model.rope_freqs, int(hp.n_rot), hp.rope_mode, int(hp.n_ctx_train),
                             hp.rope_freq_base, hp.rope_freq_scale, /*ext_factor*/ 0.0f, /*attn_factor*/ 1.0f,
                             /*beta_fast*/ 32.0f, /*beta_slow*/ 1.0f);
    }

    // [hd, heads, T*N] -> [hd, T, heads*N] (contiguous): heads of one sequence adjacent, so mul_mat's GQA
    // broadcast (q head h uses kv head h / (n_head / n_head_kv)) stays within a sequence.
    ggml_tensor * heads_major(ggml_tensor * x, int64_t hd, int64_t heads, int64_t T, int64_t N) {
        x = ggml_reshape_4d(ctx, x, hd, heads, T, N);
        x = ggml_cont(ctx, ggml_permute(ctx, x, 0, 2, 1, 3));
        return ggml_reshape_3d(ctx, x, hd, T, heads * N);
    }
};

} // namespace

void build_llama_graph(LlamaGraph & g, const LlamaModel & model, const Adapter * adapter, const GraphShape & shape,
                       const GradientTargets * grads) {
    const LlamaHParams & hp = model.hp;
    const int64_t T = shape.T, N = shape.N, TN = T * N, hd = hp.head_dim, nh = hp.n_head, nkv = hp.n_head_kv;
    g.shape = shape;
    const size_t graph_size = size_t(4096 + hp.n_layer * 1536);
    ggml_init_params ip = {ggml_tensor_overhead() * graph_size * 4 + ggml_graph_overhead_custom(graph_size, true) * 3,
                           nullptr, true};
    g.ctx = ggml_init(ip);
    ggml_context * ctx = g.ctx;
    Builder b{ctx, model, adapter};

    g.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, TN);
    g.positions = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, TN);
    g.kq_mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);
    for (ggml_tensor * t : {g.tokens, g.positions, g.kq_mask}) ggml_set_input(t);
    ggml_set_name(g.tokens, "tokens");
    ggml_set_name(g.positions, "positions");
    ggml_set_name(g.kq_mask, "kq_mask");

    if (shape.backward) {
        if (!grads || grads->params.empty() || !grads->loss_grad || shape.K <= 0) fail(EXIT_INTERNAL, "backward graph without params or loss");
        for (const Trainable & p : grads->params) ggml_set_param(p.value);
    }

    const float kq_scale = 1.0f / std::sqrt(float(hd));
    ggml_tensor * x = ggml_get_rows(ctx, model.tok_embd, g.tokens); // [d, T*N]
    for (int64_t il = 0; il < hp.n_layer; il++) {
        const LlamaLayer & L = model.layers[size_t(il)];
        ggml_tensor * cur = ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.rms_eps), L.attn_norm);

        ggml_tensor * q = ggml_reshape_3d(ctx, b.linear(int(il), MOD_Q, cur), hd, nh, TN);
        ggml_tensor * k = ggml_reshape_3d(ctx, b.linear(int(il), MOD_K, cur), hd, nkv, TN);
        ggml_tensor * v = ggml_reshape_3d(ctx, b.linear(int(il), MOD_V, cur), hd, nkv, TN);
        // qwen3: RMSNorm of each head of q and k (over head_dim) before rope, as llama.cpp's qwen3 graph does
        if (L.q_norm) q = ggml_mul(ctx, ggml_rms_norm(ctx, q, hp.rms_eps), L.q_norm);
        if (L.k_norm) k = ggml_mul(ctx, ggml_rms_norm(ctx, k, hp.rms_eps), L.k_norm);
        q = b.rope(q, g.positions);
        k = b.rope(k, g.positions);

        ggml_tensor * qh = b.heads_major(q, hd, nh, T, N);  // [hd, T, nh*N]
        ggml_tensor * kh = b.heads_major(k, hd, nkv, T, N); // [hd, T, nkv*N]
        ggml_tensor * kq = ggml_mul_mat(ctx, kh, qh);        // [T_kv, T_q, nh*N]
        kq = ggml_soft_max_ext(ctx, kq, g.kq_mask, kq_scale, 0.0f);
        ggml_tensor * vt = ggml_reshape_4d(ctx, v, hd, nkv, T, N);
        vt = ggml_cont(ctx, ggml_permute(ctx, vt, 1, 2, 0, 3)); // [T, hd, nkv, N]
        vt = ggml_reshape_3d(ctx, vt, T, hd, nkv * N);
        ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);            // [hd, T_q, nh*N]
        kqv = ggml_reshape_4d(ctx, kqv, hd, T, nh, N);
        kqv = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3)); // [hd, nh, T, N]
        cur = ggml_reshape_2d(ctx, kqv, hd * nh, TN);
        cur = b.linear(int(il), MOD_O, cur);
        x = ggml_add(ctx, cur, x);

        cur = ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.rms_eps), L.ffn_norm);
        ggml_tensor * gate = b.linear(int(il), MOD_GATE, cur);
        ggml_tensor * up = b.linear(int(il), MOD_UP, cur);
        cur = b.linear(int(il), MOD_DOWN, ggml_swiglu_split(ctx, gate, up));
        x = ggml_add(ctx, cur, x);
    }
    ggml_tensor * h = ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.rms_eps), model.output_norm); // [d, T*N]

    const size_t graph_size_nodes = graph_size;
    g.forward = ggml_new_graph_custom(ctx, graph_size_nodes, /*grads =*/shape.backward);
    if (shape.all_logits) {
        g.logits = ggml_mul_mat(ctx, model.output, h);
        if (model.output_b) g.logits = ggml_add(ctx, g.logits, model.output_b);
        ggml_set_name(g.logits, "logits");
        ggml_set_output(g.logits);
        ggml_build_forward_expand(g.forward, g.logits);
    }
    if (shape.K > 0) {
        g.sel_rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, shape.K);
        g.sel_rowmask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, shape.K);
        g.labels = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_vocab, shape.K);
        g.loss_scale = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
        for (ggml_tensor * t : {g.sel_rows, g.sel_rowmask, g.labels, g.loss_scale}) ggml_set_input(t);
        ggml_tensor * sel = ggml_mul(ctx, ggml_get_rows(ctx, h, g.sel_rows), g.sel_rowmask); // [d, K]
        ggml_tensor * sel_logits = ggml_mul_mat(ctx, model.output, sel);                       // [V, K]
        if (model.output_b) sel_logits = ggml_add(ctx, sel_logits, model.output_b);
        g.loss = ggml_mul(ctx, ggml_cross_entropy_loss(ctx, sel_logits, g.labels), g.loss_scale);
        ggml_set_name(g.loss, "loss");
        ggml_set_output(g.loss);
        ggml_build_forward_expand(g.forward, g.loss);
    }

    if (shape.backward) {
        ggml_set_loss(g.loss);
        std::map<const ggml_tensor *, ggml_tensor *> acc_of;
        for (const Trainable & p : grads->params) acc_of[p.value] = p.grad;
        acc_of[g.loss] = grads->loss_grad;
        const int n_nodes = ggml_graph_n_nodes(g.forward);
        std::vector<ggml_tensor *> accs(size_t(n_nodes), nullptr);
        for (int i = 0; i < n_nodes; i++) {
            auto it = acc_of.find(ggml_graph_node(g.forward, i));
            if (it != acc_of.end()) accs[size_t(i)] = it->second;
        }
        g.backward = ggml_graph_dup(ctx, g.forward, /*force_grads =*/true);
        ggml_build_backward_expand(ctx, g.backward, accs.data());
    }
}

HostBatch make_batch(const std::vector<const Sequence *> & seqs, const GraphShape & shape) {
    const int64_t T = shape.T, N = shape.N;
    if (int64_t(seqs.size()) > N) fail(EXIT_INTERNAL, "batch larger than the graph");
    HostBatch hb;
    hb.n_seqs = int64_t(seqs.size());
    hb.tokens.assign(size_t(T * N), 0);
    hb.positions.resize(size_t(T * N));
    for (int64_t i = 0; i < T * N; i++) hb.positions[size_t(i)] = int32_t(i % T);
    hb.kq_mask.resize(size_t(T * T));
    for (int64_t q = 0; q < T; q++) {
        for (int64_t kv = 0; kv < T; kv++) hb.kq_mask[size_t(q * T + kv)] = kv <= q ? 0.0f : -INFINITY;
    }
    for (size_t n = 0; n < seqs.size(); n++) {
        const Sequence & s = *seqs[n];
        const int64_t len = std::min<int64_t>(T, int64_t(s.tokens.size()));
        hb.n_tokens += len;
        for (int64_t t = 0; t < len; t++) {
            hb.tokens[size_t(int64_t(n) * T + t)] = s.tokens[size_t(t)];
            if (t >= 1 && s.supervised[size_t(t)]) {
                hb.sel_rows.push_back(int32_t(int64_t(n) * T + t - 1)); // the position that predicts token t
                hb.sel_labels.push_back(s.tokens[size_t(t)]);
            }
        }
    }
    hb.n_targets = int64_t(hb.sel_rows.size());
    if (shape.K > 0) {
        if (hb.n_targets > shape.K) fail(EXIT_INTERNAL, "batch has more targets than the selection capacity");
        hb.sel_rowmask.assign(size_t(shape.K), 0.0f);
        std::fill(hb.sel_rowmask.begin(), hb.sel_rowmask.begin() + hb.n_targets, 1.0f);
        hb.sel_rows.resize(size_t(shape.K), 0); // padding rows read row 0 and are multiplied by 0
    }
    return hb;
}

void upload_batch(const LlamaGraph & g, const HostBatch & hb, int64_t n_vocab, double loss_denominator) {
    ggml_backend_tensor_set(g.tokens, hb.tokens.data(), 0, ggml_nbytes(g.tokens));
    ggml_backend_tensor_set(g.positions, hb.positions.data(), 0, ggml_nbytes(g.positions));
    ggml_backend_tensor_set(g.kq_mask, hb.kq_mask.data(), 0, ggml_nbytes(g.kq_mask));
    if (g.shape.K > 0) {
        ggml_backend_tensor_set(g.sel_rows, hb.sel_rows.data(), 0, ggml_nbytes(g.sel_rows));
        ggml_backend_tensor_set(g.sel_rowmask, hb.sel_rowmask.data(), 0, ggml_nbytes(g.sel_rowmask));
        ggml_backend_tensor_memset(g.labels, 0, 0, ggml_nbytes(g.labels));
        const float one = 1.0f;
        for (int64_t r = 0; r < hb.n_targets; r++) {
            const size_t offset = (size_t(r) * size_t(n_vocab) + size_t(hb.sel_labels[size_t(r)])) * sizeof(float);
            ggml_backend_tensor_set(g.labels, &one, offset, sizeof one);
        }
        const float scale = float(double(g.shape.K) / loss_denominator);
        ggml_backend_tensor_set(g.loss_scale, &scale, 0, sizeof scale);
    }
}

int64_t selection_capacity(const std::vector<Sequence> & seqs, int64_t T, int64_t N) {
    std::vector<int64_t> counts;
    for (const Sequence & s : seqs) {
        int64_t c = 0;
        const size_t len = std::min<size_t>(size_t(T), s.tokens.size());
        for (size_t t = 1; t < len; t++) c += s.supervised[t] ? 1 : 0;
        counts.push_back(c);
    }
    std::sort(counts.rbegin(), counts.rend());
    int64_t k = 0;
    for (size_t i = 0; i < counts.size() && int64_t(i) < N; i++) k += counts[i];
    return std::max<int64_t>(1, std::min(k, T * N));
}

} // namespace lori
