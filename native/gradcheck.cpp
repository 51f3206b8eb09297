// Mode "gradcheck": analytic dB (and dA for lora; dA and dm for dora, its row norm held constant as in training;
// every weight for method "full") from the backward graph vs central finite differences of the training loss, on
// the first `batch` sequences. B starts random (seeded) so every path carries signal.
// The difference quotient is the 4-point stencil (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h (error O(h^4)), so
// h can be large enough for the F32 loss's rounding noise (~1e-7 relative) not to dominate. Reported:
//   max_rel_err      max |fd - an| / max(|fd|, |an|) over the checked entries with the largest gradients (half of them)
//   norm_rel_err     ||fd - an|| / ||an|| over all checked entries (half of them random)
//   max_abs_err      max |fd - an|, and max_abs_grad = max |an| over all trainable entries
// Masked entries must have exactly 0 analytic gradient (masked_nonzero_grads) and 0 finite difference.
#include "dora.h"
#include "errors.h"
#include "full_model.h"
#include "io.h"
#include "llama_graph.h"
#include "modes.h"
#include "runner.h"
#include "session.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace lori {

namespace {

struct Entry { size_t param; size_t index; double analytic; };

} // namespace

int run_gradcheck(const Config & config) {
    const bool full = config.str("method", "lori-d") == "full";
    const AdapterSpec spec = full ? AdapterSpec{} : adapter_spec_from(config);
    AdapterSources sources;
    if (!full) sources.mask = config.str("mask", "");
    const std::string shards = config.str("shards");
    const int64_t max_len = config.integer("max_len", 32), batch = config.integer("batch", 2);
    const int64_t n_entries = config.integer("entries", 48);
    const double fd_eps = config.num("fd_eps", 0.02), init_scale = config.num("init_scale", 0.1);
    Session session;
    open_session(session, config, full);
    config.reject_unknown_keys();
    const LlamaModel & model = session.model;

    std::vector<Sequence> seqs = load_sequences(shards, model.hp.n_vocab, max_len);
    if (int64_t(seqs.size()) > batch) seqs.resize(size_t(batch));
    if (seqs.empty()) fail(EXIT_INPUT, shards + ": no sequence with supervised tokens");
    std::vector<const Sequence *> ptrs;
    for (const Sequence & s : seqs) ptrs.push_back(&s);

    Adapter adapter;
    FullModelGradients model_grads;
    GradientTargets targets;
    std::mt19937_64 rng(spec.seed ^ 0x6AD1C4EC4ull);
    if (full) {
        create_full_model_gradients(model_grads, model, session.backend.main);
        targets = model_grads.targets;
    } else {
        create_adapter(adapter, model, spec, sources, session.backend.main);
        std::uniform_real_distribution<float> uni(-float(init_scale), float(init_scale));
        for (AdapterTarget & t : adapter.targets) {
            std::vector<float> b(size_t(t.out * spec.rank));
            for (float & x : b) x = uni(rng);
            tensor_from_host(t.b, b);
        }
        // DoRA: the norms of this random B, held fixed for the finite differences too (PEFT's detached norm: the
        // analytic gradient is that of the loss with ||W + s B A|| a constant); m off the norms by up to ±20 %,
        // so W' != W and dm carries signal.
        refresh_dora_norms(adapter, model, session.backend.main);
        std::uniform_real_distribution<float> ratio(0.8f, 1.2f);
        for (AdapterTarget & t : adapter.targets) {
            if (!t.magnitude) continue;
            std::vector<float> m = tensor_to_host(t.weight_norm);
            for (float & x : m) x *= ratio(rng);
            tensor_from_host(t.magnitude, m);
        }
        targets = adapter.gradient_targets();
    }

    GraphShape shape;
    shape.T = padded_length({&seqs}, max_len);
    shape.N = int64_t(seqs.size());
    shape.K = selection_capacity(seqs, shape.T, shape.N);
    shape.backward = true;
    LlamaGraph g;
    build_llama_graph(g, model, full ? nullptr : &adapter, shape, &targets);
    Runner runner(session.backend, size_t(ggml_graph_size(g.backward)));
    const HostBatch hb = make_batch(ptrs, shape);

    auto loss_of = [&](ggml_cgraph * graph) {
        runner.alloc(graph);
        upload_batch(g, hb, model.hp.n_vocab, double(shape.N));
        runner.compute(graph);
        float l = 0.0f;
        ggml_backend_tensor_get(g.loss, &l, 0, sizeof l);
        return double(l);
    };
    full ? model_grads.zero_grads() : adapter.zero_grads();
    const double loss = loss_of(g.backward);

    std::vector<Entry> entries;
    int64_t masked = 0, masked_nonzero = 0;
    double gmax = 0.0;
    std::vector<Entry> masked_entries;
    for (size_t pi = 0; pi < targets.params.size(); pi++) {
        const Trainable & p = targets.params[pi];
        const std::vector<float> gv = tensor_to_host(p.grad);
        for (size_t i = 0; i < gv.size(); i++) {
            if (p.mask && (*p.mask)[i] == 0.0f) {
                masked++;
                if (gv[i] != 0.0f) masked_nonzero++;
                if (masked_entries.size() < 4) masked_entries.push_back({pi, i, double(gv[i])});
                continue;
            }
            entries.push_back({pi, i, double(gv[i])});
            gmax = std::max(gmax, std::fabs(double(gv[i])));
        }
    }
    // half the checks on the largest gradients, half on random entries
    std::sort(entries.begin(), entries.end(), [](const Entry & a, const Entry & b) { return std::fabs(a.analytic) > std::fabs(b.analytic); });
    std::vector<Entry> chosen(entries.begin(), entries.begin() + long(std::min<size_t>(entries.size(), size_t(n_entries / 2))));
    std::shuffle(entries.begin() + long(chosen.size()), entries.end(), rng);
    for (size_t i = chosen.size(); i < entries.size() && int64_t(chosen.size()) < n_entries; i++) chosen.push_back(entries[i]);

    auto finite_difference = [&](const Entry & e) {
        ggml_tensor * param = targets.params[e.param].value;
        const size_t off = e.index * sizeof(float);
        float x0;
        ggml_backend_tensor_get(param, &x0, off, sizeof(float));
        auto at = [&](double k) {
            const float x = float(double(x0) + k * fd_eps);
            ggml_backend_tensor_set(param, &x, off, sizeof(float));
            return loss_of(g.forward);
        };
        const double fp2 = at(2), fp1 = at(1), fm1 = at(-1), fm2 = at(-2);
        ggml_backend_tensor_set(param, &x0, off, sizeof(float)); // restored bit for bit
        return (-fp2 + 8.0 * fp1 - 8.0 * fm1 + fm2) / (12.0 * fd_eps);
    };
    double max_rel = 0.0, max_abs = 0.0, diff2 = 0.0, an2 = 0.0;
    std::vector<double> rels;
    int64_t checked_magnitude = 0; // DoRA's m entries among the checked ones
    for (size_t i = 0; i < chosen.size(); i++) {
        const Entry & e = chosen[i];
        if (std::string(targets.params[e.param].value->name).find("lora_magnitude_vector") != std::string::npos) checked_magnitude++;
        const double fd = finite_difference(e);
        const double err = std::fabs(fd - e.analytic);
        max_abs = std::max(max_abs, err);
        diff2 += err * err;
        an2 += e.analytic * e.analytic;
        if (int64_t(i) < n_entries / 2) {
            const double rel = err / std::max({std::fabs(fd), std::fabs(e.analytic), 1e-30});
            max_rel = std::max(max_rel, rel);
            rels.push_back(rel);
        }
    }
    double masked_fd = 0.0;
    for (const Entry & e : masked_entries) masked_fd = std::max(masked_fd, std::fabs(finite_difference(e)));
    std::sort(rels.begin(), rels.end());
    emit(json::Obj().add("event", "gradcheck").add("loss", loss).add("checked", int64_t(chosen.size()))
             .add("max_rel_err", max_rel).add("median_rel_err", rels.empty() ? 0.0 : rels[rels.size() / 2])
             .add("norm_rel_err", an2 > 0 ? std::sqrt(diff2 / an2) : 0.0)
             .add("max_abs_err", max_abs).add("max_abs_grad", gmax).add("fd_eps", fd_eps)
             .add("masked_entries", masked).add("masked_nonzero_grads", masked_nonzero).add("masked_fd_max_abs", masked_fd)
             .add("checked_magnitude", checked_magnitude));
    return EXIT_OK;
}

} // namespace lori
