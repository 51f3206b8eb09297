#include "token_shards.h"

#include "errors.h"
#include "io.h"

#include <cstring>

namespace lori {

int64_t Sequence::n_targets() const {
    int64_t n = 0;
    for (size_t t = 1; t < supervised.size(); t++) n += supervised[t] ? 1 : 0;
    return n;
}

std::vector<Sequence> read_token_shards(const std::string & path, int32_t n_vocab) {
    const std::string bytes = read_file(path);
    size_t pos = 0;
    auto bad = [&](const std::string & why) {
        fail(EXIT_INPUT, path + ": invalid token-shard file at byte " + std::to_string(pos) + " (" + why + ")");
    };
    auto u32 = [&]() {
        if (pos + 4 > bytes.size()) bad("truncated");
        uint32_t v;
        std::memcpy(&v, bytes.data() + pos, 4);
        pos += 4;
        return v;
    };
    if (bytes.size() < 16 || std::memcmp(bytes.data(), "LORITOK1", 8) != 0) bad("missing LORITOK1 magic");
    pos = 8;
    const uint32_t version = u32();
    if (version != 1) bad("unsupported version " + std::to_string(version));
    const uint32_t n_seq = u32();
    std::vector<Sequence> seqs(n_seq);
    for (uint32_t s = 0; s < n_seq; s++) {
        const uint32_t n = u32();
        if (uint64_t(n) * 5 > bytes.size() - pos) bad("sequence " + std::to_string(s) + " is truncated");
        Sequence & seq = seqs[s];
        seq.tokens.resize(n);
        seq.supervised.resize(n);
        for (uint32_t t = 0; t < n; t++) {
            const uint32_t tok = u32();
            if (n_vocab > 0 && tok >= uint32_t(n_vocab)) {
                bad("token id " + std::to_string(tok) + " >= vocabulary size " + std::to_string(n_vocab));
            }
            seq.tokens[t] = int32_t(tok);
        }
        std::memcpy(seq.supervised.data(), bytes.data() + pos, n);
        pos += n;
        for (uint8_t & f : seq.supervised) f = f ? 1 : 0;
        pos = (pos + 3) & ~size_t(3);
    }
    if (pos != bytes.size()) bad("trailing bytes");
    return seqs;
}

} // namespace lori
