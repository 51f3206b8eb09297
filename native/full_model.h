// Full fine-tuning: every weight of the base model is a parameter (held in F32), and the result is written as a
// new GGUF model with the base file's metadata (tokenizer, chat template, hyperparameters) carried over.
#pragma once

#include "model.h"
#include "trainables.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <cstdint>
#include <map>
#include <string>

namespace lori {

struct FullModelGradients {
    GradientTargets targets;
    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buffer = nullptr;

    FullModelGradients() = default;
    FullModelGradients(const FullModelGradients &) = delete;
    FullModelGradients & operator=(const FullModelGradients &) = delete;
    ~FullModelGradients();

    void zero_grads();
    int64_t trainable_params() const;
};

// Gradient accumulators for every tensor of the model (which must hold F32 weights). Throws Error(EXIT_USAGE)
// when a weight is not F32.
void create_full_model_gradients(FullModelGradients & grads, const LlamaModel & model, ggml_backend_t backend);

// Identity of a full fine-tuning run, for checkpoints ("method", "params").
std::map<std::string, std::string> full_model_metadata(const LlamaModel & model);

// Writes the model's current weights (F32) as a GGUF file at `path`, with every metadata key of the base file
// (model.path) plus "lori.training.*" entries from `extra`. Tensors the trainer does not hold are copied as they are.
void write_model_gguf(const LlamaModel & model, const std::string & path, const std::map<std::string, std::string> & extra);

} // namespace lori
