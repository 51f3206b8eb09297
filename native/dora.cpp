#include "dora.h"

#include "errors.h"

#include "ggml-alloc.h"

#include <memory>

namespace lori {

namespace {

struct CtxDeleter {
    void operator()(ggml_context * c) const { ggml_free(c); }
};
struct AllocDeleter {
    void operator()(ggml_gallocr_t a) const { ggml_gallocr_free(a); }
};

} // namespace

void refresh_dora_norms(const Adapter & ad, const LlamaModel & model, ggml_backend_t backend) {
    if (!ad.dora()) return;
    const size_t n_nodes = ad.targets.size() * 12 + 16;
    ggml_init_params ip = {ggml_tensor_overhead() * n_nodes + ggml_graph_overhead_custom(n_nodes, false), nullptr, true};
    std::unique_ptr<ggml_context, CtxDeleter> ctx(ggml_init(ip));
    ggml_cgraph * graph = ggml_new_graph_custom(ctx.get(), n_nodes, false);
    for (const AdapterTarget & t : ad.targets) {
        ggml_tensor * w = model.layers[size_t(t.layer)].w[t.module]; // ne [in, out]
        // Quantized/F16 frozen weights (frozen_weights "native") are converted for the sum only.
        if (w->type != GGML_TYPE_F32) w = ggml_cast(ctx.get(), w, GGML_TYPE_F32);
        ggml_tensor * at = ggml_cont(ctx.get(), ggml_transpose(ctx.get(), t.a)); // ne [r, in]
        ggml_tensor * delta = ggml_mul_mat(ctx.get(), at, t.b);                   // ne [in, out]: (B A)[o][i]
        ggml_tensor * merged = ggml_add(ctx.get(), w, ggml_scale(ctx.get(), delta, ad.scale));
        ggml_tensor * norm = ggml_sqrt(ctx.get(), ggml_sum_rows(ctx.get(), ggml_sqr(ctx.get(), merged))); // ne [1, out]
        ggml_build_forward_expand(graph, ggml_cpy(ctx.get(), ggml_reshape_1d(ctx.get(), norm, t.out), t.weight_norm));
    }
    std::unique_ptr<ggml_gallocr, AllocDeleter> alloc(ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend)));
    if (!ggml_gallocr_alloc_graph(alloc.get(), graph)) fail(EXIT_INTERNAL, "cannot allocate the DoRA norm graph");
    if (ggml_backend_graph_compute(backend, graph) != GGML_STATUS_SUCCESS) fail(EXIT_INTERNAL, "the DoRA norm graph failed");
}

} // namespace lori
