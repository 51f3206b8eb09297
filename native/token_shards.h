// Token-shard files: the training data format written by src/train/token-shards.ts (see native/README.md).
//   magic "LORITOK1" (8 bytes) | u32 version = 1 | u32 n_sequences
//   per sequence: u32 n_tokens | n_tokens x u32 token id | n_tokens x u8 supervised flag (0/1) | zero pad to 4 bytes
// All integers little-endian. A supervised token is a prediction target: the loss adds -log p(token | prefix).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lori {

struct Sequence {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> supervised;

    int64_t n_targets() const; // supervised tokens at positions >= 1 (position 0 has no prefix to predict from)
};

std::vector<Sequence> read_token_shards(const std::string & path, int32_t n_vocab); // throws Error(EXIT_INPUT)

} // namespace lori
