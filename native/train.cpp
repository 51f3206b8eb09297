// lori-train: the native LoRI/LoRA trainer of lori-server, on ggml (node-llama-cpp's prebuilt libraries).
//
//   lori-train <config.json>     JSON lines on stdout, exit codes in errors.h / native/README.md
//
// Modes: train, gradcheck, logits, export-gguf, seeded-a, make-model.

#include "config.h"
#include "errors.h"
#include "io.h"
#include "modes.h"

#include <cstring>
#include <exception>

int main(int argc, char ** argv) {
    using namespace lori;
    if (argc != 2 || std::strcmp(argv[1], "--help") == 0) {
        emit_error(EXIT_USAGE, "usage: lori-train <config.json> (modes: train, gradcheck, logits, export-gguf, seeded-a, make-model)");
        return EXIT_USAGE;
    }
    try {
        const Config config = Config::load(argv[1]);
        const std::string mode = config.str("mode");
        if (mode == "train") return run_train(config);
        if (mode == "gradcheck") return run_gradcheck(config);
        if (mode == "logits") return run_logits(config);
        if (mode == "export-gguf") return run_export_gguf(config);
        if (mode == "seeded-a") return run_seeded_a(config);
        if (mode == "make-model") return run_make_model(config);
        fail(EXIT_USAGE, "config: unknown mode \"" + mode + "\"");
    } catch (const Error & e) {
        emit_error(e.code, e.what());
        return e.code;
    } catch (const std::exception & e) {
        emit_error(EXIT_INTERNAL, std::string("internal error: ") + e.what());
        return EXIT_INTERNAL;
    }
}
