// Mode "logits": base model + adapter (or none) on the sequences of a token-shard file. Writes the logits of
// every position (F32 little-endian, per sequence [n_tokens, n_vocab] row-major, sequences concatenated) and
// reports the training loss of the same batch computed through the training path (selected rows + cross entropy).
#include "errors.h"
#include "io.h"
#include "llama_graph.h"
#include "modes.h"
#include "runner.h"
#include "session.h"

#include <cstring>

namespace lori {

int run_logits(const Config & config) {
    const std::string shards = config.str("shards"), adapter_path = config.str("adapter", "");
    const std::string out_path = config.str("logits_out", "");
    const int64_t max_len = config.integer("max_len", 512);
    Session session;
    open_session(session, config);
    config.reject_unknown_keys();
    const LlamaModel & model = session.model;
    const int64_t V = model.hp.n_vocab;

    std::vector<Sequence> seqs = read_token_shards(shards, int32_t(V));
    if (seqs.empty()) fail(EXIT_INPUT, shards + ": no sequences");
    for (Sequence & s : seqs) {
        if (int64_t(s.tokens.size()) > max_len) { s.tokens.resize(size_t(max_len)); s.supervised.resize(size_t(max_len)); }
        if (s.tokens.empty()) fail(EXIT_INPUT, shards + ": empty sequence");
    }
    Adapter adapter;
    if (!adapter_path.empty()) load_adapter_file(adapter, model, adapter_path, session.backend.main, nullptr);

    GraphShape shape;
    shape.T = padded_length({&seqs}, max_len);
    shape.N = int64_t(seqs.size());
    shape.K = selection_capacity(seqs, shape.T, shape.N);
    shape.all_logits = true;
    LlamaGraph g;
    build_llama_graph(g, model, adapter_path.empty() ? nullptr : &adapter, shape);
    Runner runner(session.backend, size_t(ggml_graph_size(g.forward)));
    std::vector<const Sequence *> ptrs;
    for (const Sequence & s : seqs) ptrs.push_back(&s);
    const HostBatch hb = make_batch(ptrs, shape);
    runner.alloc(g.forward);
    upload_batch(g, hb, V, double(seqs.size()));
    runner.compute(g.forward);
    float loss = 0.0f;
    ggml_backend_tensor_get(g.loss, &loss, 0, sizeof loss);
    const std::vector<float> logits = tensor_to_host(g.logits); // [T*N, V]

    std::vector<uint8_t> bytes;
    std::string lengths;
    for (size_t n = 0; n < seqs.size(); n++) {
        const size_t len = seqs[n].tokens.size();
        const float * src = logits.data() + n * size_t(shape.T) * size_t(V);
        if (!out_path.empty()) {
            const size_t nb = len * size_t(V) * sizeof(float);
            bytes.resize(bytes.size() + nb);
            std::memcpy(bytes.data() + bytes.size() - nb, src, nb);
        } else {
            std::string values;
            for (size_t i = 0; i < len * size_t(V); i++) values += (i ? "," : "") + json::number(double(src[i]));
            emit(json::Obj().add("event", "logits").add("seq", int64_t(n)).add("n_tokens", int64_t(len)).raw("values", "[" + values + "]"));
        }
        lengths += (n ? "," : "") + std::to_string(len);
    }
    if (!out_path.empty()) write_file_atomic(out_path, bytes);
    json::Obj done = json::Obj().add("event", "done").add("mode", "logits").add("n_seqs", int64_t(seqs.size()))
                         .add("n_vocab", V).raw("lengths", "[" + lengths + "]").add("loss", double(loss))
                         .add("n_targets", hb.n_targets);
    if (!out_path.empty()) done.add("logits_out", out_path);
    emit(done);
    return EXIT_OK;
}

} // namespace lori
