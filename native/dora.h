// DoRA's weight norm: ||W + s B A|| per output row (over the input dimension, PEFT's `get_weight_norm`), for every
// target of a DoRA adapter. The training graph reads it as a constant (PEFT detaches it from the gradient), so it
// is recomputed here, in a small graph of its own, whenever A or B change: before training, after every optimizer
// step, after loading an adapter. Finite differences against that graph hold it fixed too (gradcheck.cpp).
#pragma once

#include "adapter.h"
#include "model.h"

#include "ggml-backend.h"

namespace lori {

// Writes every target's weight_norm from the current W, A and B. No-op for other methods.
void refresh_dora_norms(const Adapter & adapter, const LlamaModel & model, ggml_backend_t backend);

} // namespace lori
