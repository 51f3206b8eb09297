// Minimal safetensors reader/writer: 8-byte LE header length, JSON header (padded with spaces to 8 bytes),
// raw little-endian data. Used for adapters (lora_b/lora_a), masks, init-B files and checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lori {

struct StTensor {
    std::string name;
    std::string dtype; // "F32", "F16", "BF16", "U8", "BOOL", ...
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;

    int64_t numel() const;
    std::vector<float> to_f32() const; // F32/F16/BF16/U8/BOOL; throws Error(EXIT_INPUT) otherwise
};

struct StFile {
    std::map<std::string, std::string> metadata;
    std::vector<StTensor> tensors;

    const StTensor * find(const std::string & name) const;
};

StFile st_read(const std::string & path); // throws Error(EXIT_INPUT)

struct StWriteTensor {
    std::string name;
    std::vector<int64_t> shape;
    const float * data; // F32, numel(shape) values
};

// Tensors are written in the given order; atomic (path.tmp + rename).
void st_write(const std::string & path, const std::map<std::string, std::string> & metadata,
              const std::vector<StWriteTensor> & tensors);

} // namespace lori
