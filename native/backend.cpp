#include "backend.h"

#include "errors.h"
#include "io.h"

#include "ggml-cpu.h"
#include "ggml.h"

#include <dlfcn.h>
#include <thread>

namespace lori {

Backend::~Backend() {
    if (main && main != cpu) ggml_backend_free(main);
    if (cpu) ggml_backend_free(cpu);
}

std::vector<ggml_backend_t> Backend::list() const {
    if (main == cpu) return {cpu};
    return {main, cpu};
}

static std::string dirname_of(const std::string & path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

// The folder libggml-base.so was loaded from (the binary's rpath points at node-llama-cpp's prebuilt bins).
static std::string ggml_base_dir() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&ggml_init), &info) && info.dli_fname) return dirname_of(info.dli_fname);
    return ".";
}

static void ggml_log_filter(enum ggml_log_level level, const char * text, void *) {
    // ggml's own messages go to stderr (stdout carries JSON lines only); info/debug are dropped
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_CONT) {
        fputs(text, stderr);
    }
}

void init_backend(Backend & backend, const BackendOptions & options) {
    ggml_log_set(ggml_log_filter, nullptr);
    if (options.gpu != "auto" && options.gpu != "cuda" && options.gpu != "off") {
        fail(EXIT_USAGE, "config: \"gpu\" must be \"auto\", \"cuda\" or \"off\" (got \"" + options.gpu + "\")");
    }
    const std::string cpu_dir = options.cpu_dir.empty() ? ggml_base_dir() : options.cpu_dir;
    std::string cuda_dir = options.cuda_dir;
    if (cuda_dir.empty()) {
        // .../@node-llama-cpp/linux-x64/bins/linux-x64 -> .../@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda
        const std::string bins = dirname_of(cpu_dir), pkg = dirname_of(bins), scope = dirname_of(pkg);
        const std::string plat = cpu_dir.substr(cpu_dir.rfind('/') + 1);
        cuda_dir = scope + "/" + plat + "-cuda/bins/" + plat + "-cuda";
    }

    std::string cuda_problem;
    bool cuda_loadable = false;
    if (options.gpu != "off") {
        const std::string lib = cuda_dir + "/libggml-cuda.so";
        if (!file_exists(lib)) {
            cuda_problem = lib + " not found (install @node-llama-cpp/linux-x64-cuda or set \"cuda_dir\")";
        } else if (void * h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            dlclose(h);
            cuda_loadable = true;
        } else {
            const char * why = dlerror();
            cuda_problem = std::string("cannot load ") + lib + ": " + (why ? why : "unknown error") +
                           " (the CUDA backend needs a CUDA 13 runtime: libcudart.so.13, libcublas.so.13, libcuda.so.1)";
        }
    }
    if (options.gpu == "cuda" && !cuda_loadable) fail(EXIT_BACKEND, "--gpu cuda: " + cuda_problem);

    // the CUDA package ships the same CPU variants next to libggml-cuda.so: load everything from one folder
    ggml_backend_load_all_from_path((cuda_loadable ? cuda_dir : cpu_dir).c_str());

    ggml_backend_dev_t gpu_dev = nullptr;
    if (options.gpu != "off") {
        for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) {
                gpu_dev = dev;
                break;
            }
        }
        if (!gpu_dev && options.gpu == "cuda") {
            fail(EXIT_BACKEND, "--gpu cuda: libggml-cuda.so loaded but reports no usable CUDA device");
        }
    }
    ggml_backend_dev_t cpu_dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu_dev) fail(EXIT_BACKEND, "no ggml CPU backend could be loaded from " + cpu_dir);
    backend.cpu = ggml_backend_dev_init(cpu_dev, nullptr);
    if (!backend.cpu) fail(EXIT_BACKEND, "cannot initialise the ggml CPU backend");

    backend.threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    ggml_backend_reg_t cpu_reg = ggml_backend_dev_backend_reg(cpu_dev);
    auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
        ggml_backend_reg_get_proc_address(cpu_reg, "ggml_backend_set_n_threads"));
    if (set_threads) set_threads(backend.cpu, backend.threads);

    if (gpu_dev) {
        backend.main = ggml_backend_dev_init(gpu_dev, nullptr);
        if (!backend.main) fail(EXIT_BACKEND, std::string("cannot initialise GPU device ") + ggml_backend_dev_name(gpu_dev));
        backend.is_gpu = true;
        backend.name = ggml_backend_dev_name(gpu_dev);
        backend.description = ggml_backend_dev_description(gpu_dev);
    } else {
        backend.main = backend.cpu;
        backend.name = ggml_backend_dev_name(cpu_dev);
        backend.description = ggml_backend_dev_description(cpu_dev);
    }
}

} // namespace lori
