// Mode "train": the training loop (micro-batches, gradient accumulation, AdamW, eval, checkpoints, SIGINT), for
// an adapter (method lori-d, lori-s, lora, dora) or for every weight of the model (method full).
#include "data_order.h"
#include "dora.h"
#include "errors.h"
#include "full_model.h"
#include "io.h"
#include "llama_graph.h"
#include "modes.h"
#include "optimizer.h"
#include "runner.h"
#include "session.h"

#include <algorithm>
#include <cmath>

namespace lori {

namespace {

struct TrainSettings {
    std::string shards, eval_shards, output, checkpoint;
    double eval_fraction = 0.0, lr = 1e-4;
    int64_t eval_interval = 0, checkpoint_interval = 0, max_len = 512, steps = 0, batch = 1, grad_accum = 1;
    uint64_t data_seed = 0;
    bool shuffle = true, resume = false;
    AdamWConfig adamw;
    AdapterSources sources;
};

TrainSettings read_settings(const Config & c, uint64_t default_data_seed, bool full) {
    TrainSettings s;
    s.shards = c.str("shards");
    s.output = c.str("output");
    s.eval_shards = c.str("eval_shards", "");
    s.eval_fraction = c.num("eval_fraction", 0.0);
    s.eval_interval = c.integer("eval_interval", 0);
    s.checkpoint = c.str("checkpoint", "");
    s.checkpoint_interval = c.integer("checkpoint_interval", 0);
    s.resume = c.boolean("resume", false);
    s.max_len = c.integer("max_len", 512);
    s.steps = c.integer("steps");
    s.batch = c.integer("batch", 1);
    s.grad_accum = c.integer("grad_accum", 1);
    s.shuffle = c.boolean("shuffle", true);
    s.data_seed = c.seed("data_seed", default_data_seed);
    s.lr = c.num("lr", 1e-4);
    s.adamw.lr = float(s.lr);
    s.adamw.beta1 = float(c.num("beta1", 0.9));
    s.adamw.beta2 = float(c.num("beta2", 0.999));
    s.adamw.eps = float(c.num("adam_eps", 1e-8));
    s.adamw.weight_decay = float(c.num("weight_decay", 0.0));
    s.adamw.grad_clip = float(c.num("grad_clip", 1.0));
    if (!full) { // a full run has no adapter sources (reject_unknown_keys names them if given)
        s.sources.mask = c.str("mask", "");
        s.sources.init_b = c.str("init_b", "");
    }
    if (s.steps < 0 || s.batch < 1 || s.grad_accum < 1 || s.max_len < 2) {
        fail(EXIT_USAGE, "config: need steps >= 0, batch >= 1, grad_accum >= 1, max_len >= 2");
    }
    if (s.eval_fraction < 0.0 || s.eval_fraction >= 1.0) fail(EXIT_USAGE, "config: \"eval_fraction\" must be in [0, 1)");
    if (s.resume && s.checkpoint.empty()) fail(EXIT_USAGE, "config: \"resume\" needs \"checkpoint\"");
    return s;
}

struct EvalResult { double loss = 0.0, nll_per_token = 0.0; int64_t n_seqs = 0, n_targets = 0; };

EvalResult evaluate(Runner & runner, LlamaGraph & g, const std::vector<Sequence> & seqs, int64_t n_vocab) {
    EvalResult r;
    r.n_seqs = int64_t(seqs.size());
    for (size_t start = 0; start < seqs.size(); start += size_t(g.shape.N)) {
        std::vector<const Sequence *> batch;
        for (size_t i = start; i < seqs.size() && int64_t(batch.size()) < g.shape.N; i++) batch.push_back(&seqs[i]);
        HostBatch hb = make_batch(batch, g.shape);
        runner.alloc(g.forward);
        upload_batch(g, hb, n_vocab, double(r.n_seqs));
        runner.compute(g.forward);
        float loss = 0.0f;
        ggml_backend_tensor_get(g.loss, &loss, 0, sizeof loss);
        r.loss += double(loss);
        r.n_targets += hb.n_targets;
    }
    r.nll_per_token = r.n_targets ? r.loss * double(r.n_seqs) / double(r.n_targets) : 0.0;
    return r;
}

// ||B||_F and max|B| of the adapter (as published: LoRI-S frozen entries included), and for LoRA ||A - A0||_F / ||A0||_F
// against its A at the start of the run (`a0`, empty otherwise). For the paper's training logs; null for full fine-tuning.
struct AdapterNorms { double b_norm = 0.0, b_max = 0.0, a_drift = -1.0; };

AdapterNorms adapter_norms(const Adapter & adapter, const std::vector<std::vector<float>> & a0) {
    AdapterNorms n;
    double b2 = 0.0, d2 = 0.0, a02 = 0.0;
    for (size_t i = 0; i < adapter.targets.size(); i++) {
        for (float v : published_b(adapter.targets[i])) { b2 += double(v) * v; n.b_max = std::max(n.b_max, double(std::fabs(v))); }
        if (i < a0.size()) {
            const std::vector<float> a = tensor_to_host(adapter.targets[i].a);
            for (size_t j = 0; j < a.size(); j++) { const double d = double(a[j]) - a0[i][j]; d2 += d * d; a02 += double(a0[i][j]) * a0[i][j]; }
        }
    }
    n.b_norm = std::sqrt(b2);
    if (!a0.empty() && a02 > 0.0) n.a_drift = std::sqrt(d2 / a02);
    return n;
}

void emit_eval(int64_t step, const EvalResult & e, const Adapter * adapter = nullptr, const std::vector<std::vector<float>> * a0 = nullptr) {
    json::Obj o = json::Obj().add("event", "eval").add("step", step).add("loss", e.loss).add("nll_per_token", e.nll_per_token)
             .add("n_seqs", e.n_seqs).add("n_targets", e.n_targets);
    if (adapter) {
        const AdapterNorms n = adapter_norms(*adapter, *a0);
        o.add("b_norm", n.b_norm).add("b_max_abs", n.b_max);
        if (n.a_drift >= 0.0) o.add("a_drift", n.a_drift);
    }
    emit(o);
}

} // namespace

int run_train(const Config & config) {
    const bool full = config.str("method", "lori-d") == "full";
    const AdapterSpec spec = full ? AdapterSpec{} : adapter_spec_from(config);
    const TrainSettings s = read_settings(config, full ? 0 : spec.seed, full);
    Session session;
    open_session(session, config, full);
    config.reject_unknown_keys();
    const LlamaModel & model = session.model;
    const int64_t n_vocab = model.hp.n_vocab;

    std::vector<Sequence> train = load_sequences(s.shards, n_vocab, s.max_len), eval;
    if (!s.eval_shards.empty()) {
        eval = load_sequences(s.eval_shards, n_vocab, s.max_len);
    } else if (s.eval_fraction > 0.0) {
        const size_t n_eval = size_t(std::ceil(s.eval_fraction * double(train.size())));
        eval.assign(train.end() - long(n_eval), train.end());
        train.resize(train.size() - n_eval);
    }
    if (train.empty()) fail(EXIT_INPUT, s.shards + ": no training sequence with supervised tokens");

    GraphShape shape;
    shape.T = padded_length({&train, &eval}, s.max_len);
    shape.N = s.batch;
    std::vector<Sequence> all = train;
    all.insert(all.end(), eval.begin(), eval.end());
    shape.K = selection_capacity(all, shape.T, shape.N);
    shape.backward = true;

    Adapter adapter;
    FullModelGradients model_grads;
    GradientTargets targets;
    std::map<std::string, std::string> identity;
    int64_t trainable_params = 0;
    if (full) {
        create_full_model_gradients(model_grads, model, session.backend.main);
        targets = model_grads.targets;
        identity = full_model_metadata(model);
        trainable_params = model_grads.trainable_params();
    } else {
        create_adapter(adapter, model, spec, s.sources, session.backend.main);
        targets = adapter.gradient_targets();
        identity = adapter.metadata();
        trainable_params = adapter.trainable_params();
    }
    auto zero_grads = [&]() { full ? model_grads.zero_grads() : adapter.zero_grads(); };
    std::vector<std::vector<float>> a0; // LoRA's (and DoRA's) A at the start of this run, for the a_drift of eval events
    if (!full && (spec.method == Method::Lora || spec.method == Method::Dora)) { // the methods that train A
        for (const AdapterTarget & t : adapter.targets) a0.push_back(tensor_to_host(t.a));
    }
    const Adapter * norms_of = full ? nullptr : &adapter;
    LlamaGraph g;
    build_llama_graph(g, model, full ? nullptr : &adapter, shape, &targets);
    Optimizer opt(targets, identity, session.backend.main, s.adamw);
    Runner runner(session.backend, std::max<size_t>(size_t(ggml_graph_size(g.backward)), opt.graph_size()));
    if (s.resume) opt.load(s.checkpoint);
    // DoRA's norms follow A and B: after loading a checkpoint here, after each optimizer step below.
    auto refresh_norms = [&]() { if (!full) refresh_dora_norms(adapter, model, session.backend.main); };
    refresh_norms();

    auto run_meta = [&]() {
        return std::map<std::string, std::string>{{"steps", std::to_string(opt.step_count())}, {"lr", json::number(s.lr)}};
    };
    emit(json::Obj().add("event", "start").add("mode", "train").add("backend", session.backend.name)
             .add("device", session.backend.description).add("threads", session.backend.threads)
             .add("method", full ? "full" : method_name(spec.method)).add("rank", full ? 0 : spec.rank).add("weight_types", model.weight_types).add("file_weight_types", model.file_weight_types)
             .add("trainable_params", trainable_params).add("n_train_seqs", int64_t(train.size()))
             .add("n_eval_seqs", int64_t(eval.size())).add("seq_len", shape.T).add("batch", shape.N)
             .add("grad_accum", s.grad_accum).add("start_step", opt.step_count()).add("steps", s.steps));

    install_interrupt_handlers();
    auto stop_if_interrupted = [&]() {
        if (!interrupted()) return;
        if (!s.checkpoint.empty()) opt.save(s.checkpoint, run_meta());
        json::Obj e = json::Obj().add("event", "interrupted").add("step", opt.step_count());
        if (s.checkpoint.empty()) e.add_null("checkpoint"); else e.add("checkpoint", s.checkpoint);
        emit(e);
        throw Error(EXIT_INTERRUPTED, "interrupted");
    };

    DataOrder order(int64_t(train.size()), s.data_seed, s.shuffle);
    const double t_start = now_s();
    double train_time = 0.0, last_loss = NAN;
    int64_t total_tokens = 0, last_eval_step = -1;
    try {
        while (opt.step_count() < s.steps) {
            stop_if_interrupted();
            const double t0 = now_s();
            const int64_t step = opt.step_count();
            zero_grads();
            double loss = 0.0;
            int64_t tokens = 0, step_targets = 0;
            for (int64_t micro = 0; micro < s.grad_accum; micro++) {
                stop_if_interrupted();
                std::vector<const Sequence *> batch;
                for (int64_t i = 0; i < s.batch; i++) {
                    batch.push_back(&train[size_t(order.at((step * s.grad_accum + micro) * s.batch + i))]);
                }
                HostBatch hb = make_batch(batch, shape);
                runner.alloc(g.backward);
                upload_batch(g, hb, n_vocab, double(s.batch * s.grad_accum));
                runner.compute(g.backward);
                float l = 0.0f;
                ggml_backend_tensor_get(g.loss, &l, 0, sizeof l);
                loss += double(l);
                tokens += hb.n_tokens;
                step_targets += hb.n_targets;
            }
            if (!std::isfinite(loss)) fail(EXIT_DIVERGED, "loss is " + json::number(loss) + " at step " + std::to_string(step + 1));
            opt.step(runner);
            refresh_norms();
            const double dt = now_s() - t0;
            train_time += dt;
            total_tokens += tokens;
            last_loss = loss;
            emit(json::Obj().add("event", "step").add("step", opt.step_count()).add("loss", loss).add("tokens", tokens)
                     .add("targets", step_targets).add("tokens_per_s", double(tokens) / dt).add("elapsed_s", now_s() - t_start));
            if (!eval.empty() && s.eval_interval > 0 && opt.step_count() % s.eval_interval == 0) {
                emit_eval(opt.step_count(), evaluate(runner, g, eval, n_vocab), norms_of, &a0);
                last_eval_step = opt.step_count();
            }
            if (!s.checkpoint.empty() && s.checkpoint_interval > 0 && opt.step_count() % s.checkpoint_interval == 0) {
                opt.save(s.checkpoint, run_meta());
                emit(json::Obj().add("event", "checkpoint").add("step", opt.step_count()).add("path", s.checkpoint));
            }
        }
    } catch (const Error & e) {
        if (e.code == EXIT_INTERRUPTED) return EXIT_INTERRUPTED;
        throw;
    }

    double eval_loss = NAN;
    if (!eval.empty() && last_eval_step != opt.step_count()) {
        EvalResult e = evaluate(runner, g, eval, n_vocab);
        emit_eval(opt.step_count(), e, norms_of, &a0);
        eval_loss = e.loss;
    }
    if (full) {
        write_model_gguf(model, s.output, run_meta());
    } else {
        write_adapter_safetensors(adapter, s.output, run_meta());
    }
    if (!s.checkpoint.empty()) opt.save(s.checkpoint, run_meta());
    json::Obj done;
    done.add("event", "done").add("steps", opt.step_count()).add("final_loss", last_loss)
        .add("trainable_params", trainable_params).add("tokens", total_tokens)
        .add("tokens_per_s", train_time > 0 ? double(total_tokens) / train_time : 0.0)
        .add("peak_rss_mb", peak_rss_mb()).add("elapsed_s", now_s() - t_start).add("output", s.output);
    if (std::isfinite(eval_loss)) done.add("eval_loss", eval_loss);
    emit(done);
    return EXIT_OK;
}

} // namespace lori
