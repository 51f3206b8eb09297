// Compute backend selection. ggml backends are loaded at run time from node-llama-cpp's prebuilt libraries with
// ggml_backend_load_all_from_path(dir): the CPU variant best for this machine, and libggml-cuda.so when --gpu
// asks for it (from @node-llama-cpp/linux-x64-cuda, which needs a CUDA 13 runtime: libcudart.so.13,
// libcublas.so.13, libcuda.so.1).
#pragma once

#include "ggml-backend.h"

#include <string>
#include <vector>

namespace lori {

struct BackendOptions {
    std::string gpu = "auto";  // "auto" (CUDA when it loads, else CPU) | "cuda" (required) | "off"
    int threads = 0;           // CPU threads; 0 = all hardware threads
    std::string cpu_dir;       // folder with libggml-cpu-*.so; default: the folder libggml-base.so was loaded from
    std::string cuda_dir;      // folder with libggml-cuda.so; default: @node-llama-cpp/linux-x64-cuda next to cpu_dir
};

struct Backend {
    ggml_backend_t main = nullptr; // where weights, adapter and graphs live (CUDA device 0 or CPU)
    ggml_backend_t cpu = nullptr;  // CPU backend (== main when not on a GPU); fallback for unsupported ops
    bool is_gpu = false;
    std::string name;              // e.g. "CPU", "CUDA0"
    std::string description;
    int threads = 1;

    Backend() = default;
    Backend(const Backend &) = delete;
    Backend & operator=(const Backend &) = delete;
    ~Backend();

    std::vector<ggml_backend_t> list() const; // for ggml_backend_sched_new (CPU last)
};

// Throws Error(EXIT_BACKEND) when gpu == "cuda" and no CUDA device can be used.
void init_backend(Backend & backend, const BackendOptions & options);

} // namespace lori
