#include "data_order.h"

#include "philox.h"

#include <cstddef>
#include <numeric>
#include <utility>

namespace lori {

int64_t DataOrder::at(int64_t sample) {
    const int64_t epoch = sample / n_;
    if (!shuffle_) return sample % n_;
    if (epoch != epoch_) {
        perm_.resize(size_t(n_));
        std::iota(perm_.begin(), perm_.end(), 0);
        const std::array<uint32_t, 2> key = {uint32_t(seed_ & 0xffffffffu), uint32_t(seed_ >> 32)};
        for (int64_t i = n_ - 1; i > 0; i--) {
            const uint32_t x = philox4x32_10({uint32_t(i), uint32_t(epoch), 0x5EEDu, 0u}, key)[0];
            std::swap(perm_[size_t(i)], perm_[size_t(x % uint32_t(i + 1))]);
        }
        epoch_ = epoch;
    }
    return perm_[size_t(sample % n_)];
}

} // namespace lori
