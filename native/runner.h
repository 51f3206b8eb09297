// Runs ggml graphs on the selected backend(s) through one ggml_backend_sched (CPU fallback for ops a GPU
// backend lacks). Usage per call: alloc(graph), upload inputs, compute(graph).
#pragma once

#include "backend.h"

#include "ggml-backend.h"

namespace lori {

class Runner {
public:
    Runner(const Backend & backend, size_t graph_size);
    ~Runner();
    Runner(const Runner &) = delete;
    Runner & operator=(const Runner &) = delete;

    void alloc(ggml_cgraph * graph);   // resets the scheduler and allocates graph tensors (inputs included)
    void compute(ggml_cgraph * graph); // throws Error(EXIT_INTERNAL) on failure

private:
    ggml_backend_sched_t sched_ = nullptr;
};

} // namespace lori
