#include "philox.h"

#include <cmath>

namespace lori {

namespace {
constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;

inline void mulhilo32(uint32_t a, uint32_t b, uint32_t & hi, uint32_t & lo) {
    const uint64_t p = uint64_t(a) * uint64_t(b);
    hi = uint32_t(p >> 32);
    lo = uint32_t(p);
}
} // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += W0;
            k[1] += W1;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(M0, c[0], hi0, lo0);
        mulhilo32(M1, c[2], hi1, lo1);
        c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    }
    return c;
}

static inline float seeded_a_from(uint32_t x, double bound) {
    const double u = double(x >> 8) * (1.0 / 16777216.0);
    return float((2.0 * u - 1.0) * bound);
}

float seeded_a(uint64_t seed, uint32_t layer, uint32_t module, uint32_t row, uint32_t col, int64_t in_features) {
    const std::array<uint32_t, 2> key = {uint32_t(seed & 0xffffffffu), uint32_t(seed >> 32)};
    const uint32_t x = philox4x32_10({col, row, module, layer}, key)[0];
    return seeded_a_from(x, 1.0 / std::sqrt(double(in_features)));
}

void seeded_a_fill(float * dst, uint64_t seed, uint32_t layer, uint32_t module, int64_t rank, int64_t in_features) {
    const std::array<uint32_t, 2> key = {uint32_t(seed & 0xffffffffu), uint32_t(seed >> 32)};
    const double bound = 1.0 / std::sqrt(double(in_features));
    for (int64_t r = 0; r < rank; r++) {
        for (int64_t c = 0; c < in_features; c++) {
            const uint32_t x = philox4x32_10({uint32_t(c), uint32_t(r), module, layer}, key)[0];
            dst[r * in_features + c] = seeded_a_from(x, bound);
        }
    }
}

} // namespace lori
