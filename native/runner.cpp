#include "runner.h"

#include "errors.h"

namespace lori {

Runner::Runner(const Backend & backend, size_t graph_size) {
    std::vector<ggml_backend_t> list = backend.list();
    sched_ = ggml_backend_sched_new(list.data(), nullptr, int(list.size()), graph_size, /*parallel =*/false,
                                    /*op_offload =*/false);
    if (!sched_) fail(EXIT_BACKEND, "cannot create the ggml scheduler");
}

Runner::~Runner() {
    if (sched_) ggml_backend_sched_free(sched_);
}

void Runner::alloc(ggml_cgraph * graph) {
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, graph)) fail(EXIT_INTERNAL, "cannot allocate the compute graph (out of memory?)");
}

void Runner::compute(ggml_cgraph * graph) {
    const ggml_status status = ggml_backend_sched_graph_compute(sched_, graph);
    if (status != GGML_STATUS_SUCCESS) fail(EXIT_INTERNAL, "graph compute failed (ggml status " + std::to_string(int(status)) + ")");
}

} // namespace lori
