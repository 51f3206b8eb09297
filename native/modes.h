// The modes of lori-train (argv: <mode-config.json>; "mode" selects one). Each returns the process exit code
// or throws lori::Error. See native/README.md for each mode's config keys and events.
#pragma once

#include "config.h"

namespace lori {

int run_train(const Config & config);       // trainer.cpp
int run_gradcheck(const Config & config);   // gradcheck.cpp
int run_logits(const Config & config);      // evaluate.cpp
int run_export_gguf(const Config & config); // export_gguf.cpp
int run_seeded_a(const Config & config);    // tools.cpp
int run_make_model(const Config & config);  // tools.cpp

} // namespace lori
