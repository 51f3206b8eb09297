// Exit codes and the one exception type of lori-train. The table is documented in native/README.md and mirrored
// in src/train/native-trainer.ts (keep the three in sync).
#pragma once

#include <stdexcept>
#include <string>

namespace lori {

enum ExitCode : int {
    EXIT_OK          = 0,   // finished
    EXIT_INTERNAL    = 1,   // unexpected failure (a bug)
    EXIT_USAGE       = 2,   // bad argv or config (missing/invalid fields, inconsistent resume)
    EXIT_INPUT       = 3,   // an input file is missing, unreadable or unsupported (model arch/type, shards, mask)
    EXIT_BACKEND     = 4,   // the requested compute backend is unavailable (e.g. --gpu cuda without a CUDA runtime)
    EXIT_DIVERGED    = 5,   // the loss became NaN/Inf
    EXIT_INTERRUPTED = 130, // SIGINT/SIGTERM: checkpoint written (when configured), then exit
};

struct Error : std::runtime_error {
    int code;
    Error(int code_, const std::string & message) : std::runtime_error(message), code(code_) {}
};

[[noreturn]] inline void fail(int code, const std::string & message) { throw Error(code, message); }

} // namespace lori
