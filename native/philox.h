// Seeded LoRI A: Philox4x32-10 (Random123) and the element formula shared bit for bit with src/lora (TypeScript).
//   key = [seed & 0xffffffff, seed >> 32], counter = [col, row, moduleId, layer], x = first output word,
//   u = (x >> 8) * 2^-24, A = (float)((2u - 1) * (1 / sqrt(inFeatures)))   (double math, one rounding).
// This file must be compiled without FMA contraction or fast-math (scripts/build-native.mjs: -ffp-contract=off).
#pragma once

#include <array>
#include <cstdint>

namespace lori {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// moduleId: q 0, k 1, v 2, o 3, gate 4, up 5, down 6.
float seeded_a(uint64_t seed, uint32_t layer, uint32_t module, uint32_t row, uint32_t col, int64_t in_features);

// A for one target, row-major [rank, in_features] (the PEFT lora_A layout).
void seeded_a_fill(float * dst, uint64_t seed, uint32_t layer, uint32_t module, int64_t rank, int64_t in_features);

} // namespace lori
