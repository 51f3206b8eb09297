// lori-threadpool: attaches a persistent ggml CPU thread pool to a node-llama-cpp context.
//
// Why: node-llama-cpp's prebuilt CPU libraries have no OpenMP and the addon never attaches a thread pool, so
// for every graph compute (every decode call, i.e. every generated token) ggml starts n_threads - 1 threads,
// lets them poll for work and joins them again. On 2 cores that made 2 threads several times slower than 1.
// A pool made once per context keeps its threads between computes (they poll for `poll` and then sleep), which
// is what llama.cpp's own tools do when built without OpenMP.
//
// How: the JS object of a node-llama-cpp context wraps an `AddonContext` (node-llama-cpp's addon headers,
// compiled in here, give its layout); its `ctx` member is the llama_context. The ggml pool functions live in
// the CPU backend library that ggml loaded at run time, so they are looked up through the backend registry.
// The shared libraries are the ones node-llama-cpp already loaded (same sonames), so there is one ggml.
//
// Use: `use(false)` detaches the pool (ggml then computes a 1-thread graph on the calling thread and wakes
// nobody), `use(true)` attaches it again. Both are pointer swaps, called only between computes of the context.
//
// Lifetime: the pool must outlive every compute of its context. `free()` is called after the context is
// disposed (node-llama-cpp waits for running decodes before it frees the llama_context); if the context is
// still alive then, the pool is detached first. A Ref on the AddonContext keeps its C++ object readable.

#include <napi.h>

#include "AddonContext.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace {

using ThreadpoolNew = ggml_threadpool_t (*)(ggml_threadpool_params*);
using ThreadpoolFree = void (*)(ggml_threadpool_t);

struct PoolFunctions {
  ThreadpoolNew create = nullptr;
  ThreadpoolFree destroy = nullptr;
};

PoolFunctions cpuPoolFunctions() {
  PoolFunctions functions;
  ggml_backend_dev_t device = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (device == nullptr) return functions;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(device);
  functions.create = reinterpret_cast<ThreadpoolNew>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
  functions.destroy = reinterpret_cast<ThreadpoolFree>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
  return functions;
}

class ContextThreadPool : public Napi::ObjectWrap<ContextThreadPool> {
 public:
  // new ContextThreadPool(nativeContext, cells, threads, poll); cells: the context's KV cells (all sequences)
  explicit ContextThreadPool(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ContextThreadPool>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, "expected (nativeContext, cells, threads, poll)").ThrowAsJavaScriptException();
      return;
    }
    AddonContext* context = Napi::ObjectWrap<AddonContext>::Unwrap(info[0].As<Napi::Object>());
    const uint32_t cells = info[1].As<Napi::Number>().Uint32Value();
    const int threads = info[2].As<Napi::Number>().Int32Value();
    const uint32_t poll = info[3].As<Napi::Number>().Uint32Value();
    // The layout check: a context from another node-llama-cpp build would not have its size where we read it.
    if (context == nullptr || !context->contextLoaded || context->ctx == nullptr ||
        context->context_params.n_ctx != cells || llama_n_ctx(context->ctx) != cells) {
      Napi::Error::New(env, "not a loaded node-llama-cpp 3.21.1 context").ThrowAsJavaScriptException();
      return;
    }
    if (threads < 1 || threads > GGML_MAX_N_THREADS || poll > 100) {
      Napi::RangeError::New(env, "threads must be 1..GGML_MAX_N_THREADS and poll 0..100").ThrowAsJavaScriptException();
      return;
    }
    functions_ = cpuPoolFunctions();
    if (functions_.create == nullptr || functions_.destroy == nullptr) {
      Napi::Error::New(env, "the loaded ggml CPU backend has no thread pool functions").ThrowAsJavaScriptException();
      return;
    }
    ggml_threadpool_params params = ggml_threadpool_params_default(threads);
    params.poll = poll;
    pool_ = functions_.create(&params);
    if (pool_ == nullptr) {
      Napi::Error::New(env, "ggml_threadpool_new failed").ThrowAsJavaScriptException();
      return;
    }
    context_ = context;
    context_->Ref();
    llama_attach_threadpool(context_->ctx, pool_, pool_);
  }

  ~ContextThreadPool() override { release(); }

  Napi::Value Free(const Napi::CallbackInfo& info) {
    release();
    return info.Env().Undefined();
  }

  Napi::Value Use(const Napi::CallbackInfo& info) {
    const bool attach = info.Length() > 0 && info[0].ToBoolean().Value();
    if (context_ != nullptr && pool_ != nullptr) {
      std::lock_guard<std::mutex> lock(context_->disposeMutex);
      if (context_->ctx != nullptr) {
        if (attach) llama_attach_threadpool(context_->ctx, pool_, pool_);
        else llama_detach_threadpool(context_->ctx);
      }
    }
    return info.Env().Undefined();
  }

  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("ContextThreadPool", DefineClass(env, "ContextThreadPool", {InstanceMethod("free", &ContextThreadPool::Free), InstanceMethod("use", &ContextThreadPool::Use)}));
    return exports;
  }

 private:
  void release() {
    if (context_ != nullptr) {
      {
        std::lock_guard<std::mutex> lock(context_->disposeMutex);
        if (context_->ctx != nullptr) llama_detach_threadpool(context_->ctx);
      }
      context_->Unref();
      context_ = nullptr;
    }
    if (pool_ != nullptr) {
      functions_.destroy(pool_);
      pool_ = nullptr;
    }
  }

  PoolFunctions functions_;
  ggml_threadpool_t pool_ = nullptr;
  AddonContext* context_ = nullptr;
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ContextThreadPool::Init(env, exports); }

}  // namespace

NODE_API_MODULE(lori_threadpool, InitModule)
