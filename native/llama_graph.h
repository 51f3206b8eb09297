// The llama forward graph with LoRI adapters (llama.cpp's llm_build_llama, batched: N sequences of T tokens),
// the training loss, and host-side batch assembly.
//
// Loss = sum over sequences of the summed NLL of their supervised tokens, divided by the number of sequences
// (docs/background.md section 1). Only supervised positions reach the LM head: ggml_get_rows picks K rows (a fixed
// capacity); unused rows are multiplied by 0 and have all-zero labels, so they add exactly 0 to the loss and send
// exactly 0 gradient back (ggml_cross_entropy_loss_back is wrong for all-zero label rows, but that wrong gradient
// is multiplied by the 0 row mask). ggml's cross entropy is a mean over the K rows, hence the factor K / n_seqs.
#pragma once

#include "adapter.h"
#include "model.h"
#include "token_shards.h"
#include "trainables.h"

#include "ggml.h"

#include <cstdint>
#include <vector>

namespace lori {

struct GraphShape {
    int64_t T = 0;            // tokens per sequence (padded)
    int64_t N = 0;            // sequences per batch
    int64_t K = 0;            // capacity of supervised rows (0: no loss)
    bool all_logits = false;  // also output logits [n_vocab, T*N] of every position
    bool backward = false;    // build the backward graph (gradients into the accumulators of `grads`)
};

struct LlamaGraph {
    ggml_context * ctx = nullptr;
    ggml_cgraph * forward = nullptr;
    ggml_cgraph * backward = nullptr; // forward + backward, when requested
    GraphShape shape;

    ggml_tensor * tokens = nullptr;      // I32 [T*N]
    ggml_tensor * positions = nullptr;   // I32 [T*N]
    ggml_tensor * kq_mask = nullptr;     // F32 [T, T] causal
    ggml_tensor * sel_rows = nullptr;    // I32 [K]
    ggml_tensor * sel_rowmask = nullptr; // F32 [1, K]
    ggml_tensor * labels = nullptr;      // F32 [n_vocab, K] one-hot
    ggml_tensor * loss_scale = nullptr;  // F32 [1]
    ggml_tensor * loss = nullptr;        // F32 [1]
    ggml_tensor * logits = nullptr;      // F32 [n_vocab, T*N]

    LlamaGraph() = default;
    LlamaGraph(const LlamaGraph &) = delete;
    LlamaGraph & operator=(const LlamaGraph &) = delete;
    ~LlamaGraph();
};

// `adapter` may be null (the base model alone); `grads` names the parameters and accumulators of the backward
// graph (adapter tensors, or the model's own weights for full fine-tuning) and is required with shape.backward.
void build_llama_graph(LlamaGraph & g, const LlamaModel & model, const Adapter * adapter, const GraphShape & shape,
                       const GradientTargets * grads = nullptr);

struct HostBatch {
    std::vector<int32_t> tokens, positions, sel_rows, sel_labels;
    std::vector<float> sel_rowmask, kq_mask;
    int64_t n_seqs = 0;    // real sequences in the batch
    int64_t n_tokens = 0;  // real (non-padding) tokens
    int64_t n_targets = 0; // supervised targets
};

// seqs.size() <= shape.N; sequences longer than T are truncated to T.
HostBatch make_batch(const std::vector<const Sequence *> & seqs, const GraphShape & shape);

// Uploads a batch; loss_denominator = number of sequences the loss is averaged over (a whole optimizer step).
// Call after the graph is allocated (ggml_backend_sched_alloc_graph).
void upload_batch(const LlamaGraph & g, const HostBatch & batch, int64_t n_vocab, double loss_denominator);

// Row capacity K that fits any batch of N sequences from seqs (sum of the N largest target counts, <= T*N).
int64_t selection_capacity(const std::vector<Sequence> & seqs, int64_t T, int64_t N);

} // namespace lori
