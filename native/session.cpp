#include "session.h"

#include "errors.h"
#include "io.h"

#include <algorithm>

namespace lori {

void open_session(Session & s, const Config & config, bool trainable_weights) {
    BackendOptions bo;
    bo.gpu = config.str("gpu", "auto");
    bo.threads = int(config.integer("threads", 0));
    bo.cpu_dir = config.str("cpu_dir", "");
    bo.cuda_dir = config.str("cuda_dir", "");
    const std::string model_path = config.str("model");
    const FrozenWeights frozen = trainable_weights ? FrozenWeights::F32 : frozen_weights_from_name(config.str("frozen_weights", "auto"));
    init_backend(s.backend, bo);
    load_llama_model(s.model, model_path, s.backend.main, s.backend.is_gpu, frozen);
}

AdapterSpec adapter_spec_from(const Config & config) {
    AdapterSpec spec;
    spec.method = method_from_name(config.str("method", "lori-d"));
    spec.rank = config.integer("rank", 8);
    spec.alpha = float(config.num("alpha", double(2 * spec.rank)));
    spec.seed = config.seed("seed", 0);
    if (spec.rank <= 0) fail(EXIT_USAGE, "config: \"rank\" must be positive");
    const auto targets = config.strings("targets", {"q", "k", "v", "o", "gate", "up", "down"});
    spec.modules.clear();
    for (int m = 0; m < MOD_COUNT; m++) { // canonical order, duplicates ignored
        if (std::find(targets.begin(), targets.end(), module_short_name(m)) != targets.end()) spec.modules.push_back(m);
    }
    for (const auto & t : targets) {
        if (module_from_short_name(t) < 0) fail(EXIT_USAGE, "config: unknown target \"" + t + "\" (use q, k, v, o, gate, up, down)");
    }
    if (spec.modules.empty()) fail(EXIT_USAGE, "config: \"targets\" must name at least one projection");
    return spec;
}

std::vector<Sequence> load_sequences(const std::string & path, int64_t n_vocab, int64_t max_len) {
    std::vector<Sequence> all = read_token_shards(path, int32_t(n_vocab));
    std::vector<Sequence> kept;
    int64_t truncated = 0, dropped = 0;
    for (Sequence & s : all) {
        if (int64_t(s.tokens.size()) > max_len) {
            s.tokens.resize(size_t(max_len));
            s.supervised.resize(size_t(max_len));
            truncated++;
        }
        if (s.n_targets() == 0) {
            dropped++;
            continue;
        }
        kept.push_back(std::move(s));
    }
    if (truncated) warn(path + ": " + std::to_string(truncated) + " sequences truncated to max_len " + std::to_string(max_len));
    if (dropped) warn(path + ": " + std::to_string(dropped) + " sequences without supervised tokens skipped");
    return kept;
}

int64_t padded_length(const std::vector<const std::vector<Sequence> *> & sets, int64_t max_len) {
    int64_t T = 1;
    for (const auto * set : sets) {
        for (const Sequence & s : *set) T = std::max<int64_t>(T, int64_t(s.tokens.size()));
    }
    return std::min(T, max_len);
}

} // namespace lori
