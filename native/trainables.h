// What a training run changes: parameter tensors with their gradient accumulators, as the backward graph writes
// them and AdamW reads them. An adapter (A/B) and a whole model (full fine-tuning) both reduce to this.
#pragma once

#include "ggml.h"

#include <vector>

namespace lori {

struct Trainable {
    ggml_tensor * value = nullptr;
    ggml_tensor * grad = nullptr;
    const std::vector<float> * mask = nullptr; // LoRI-S B: 0 = frozen entry (its gradient must stay exactly 0)
};

struct GradientTargets {
    std::vector<Trainable> params;
    ggml_tensor * loss_grad = nullptr; // d loss / d loss, set to 1 by the owner's zero_grads()
};

} // namespace lori
