// Deterministic data order: sample g of a run (g = (step * grad_accum + micro) * batch + i) is sequence
// perm_e[g mod n] with e = g / n, perm_e a Fisher-Yates shuffle driven by Philox (key = data seed, counter =
// [i, e, 0x5EED, 0]). A resumed run only needs the step number to continue the same order.
#pragma once

#include <cstdint>
#include <vector>

namespace lori {

class DataOrder {
public:
    DataOrder(int64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {}
    int64_t at(int64_t sample); // sequence index

private:
    int64_t n_;
    uint64_t seed_;
    bool shuffle_;
    int64_t epoch_ = -1;
    std::vector<int64_t> perm_;
};

} // namespace lori
