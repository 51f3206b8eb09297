// What every model-using mode shares: backend options, the base model, the adapter spec and data settings
// read from the config.
#pragma once

#include "adapter.h"
#include "backend.h"
#include "config.h"
#include "model.h"
#include "token_shards.h"

#include <string>
#include <vector>

namespace lori {

struct Session {
    Backend backend;
    LlamaModel model;
};

// Reads "gpu", "threads", "cpu_dir", "cuda_dir", "model", "frozen_weights"; initialises the backend, loads the model.
// With trainable_weights (full fine-tuning) every weight is held in F32 and "frozen_weights" is not read.
void open_session(Session & session, const Config & config, bool trainable_weights = false);

// Reads "method", "rank", "alpha", "seed", "targets".
AdapterSpec adapter_spec_from(const Config & config);

// Sequences with at least one target within max_len; warns about dropped/truncated ones.
std::vector<Sequence> load_sequences(const std::string & path, int64_t n_vocab, int64_t max_len);

// Padded length: the longest sequence (capped at max_len).
int64_t padded_length(const std::vector<const std::vector<Sequence> *> & sets, int64_t max_len);

} // namespace lori
