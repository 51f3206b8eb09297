#include "safetensors.h"

#include "errors.h"
#include "io.h"
#include "json.h"

#include <cstring>

namespace lori {

int64_t StTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

static float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { // subnormal
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

std::vector<float> StTensor::to_f32() const {
    const int64_t n = numel();
    std::vector<float> out(static_cast<size_t>(n), 0.0f);
    if (dtype == "F32") {
        std::memcpy(out.data(), data.data(), size_t(n) * 4);
    } else if (dtype == "F16") {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, data.data() + 2 * i, 2);
            out[i] = half_to_float(h);
        }
    } else if (dtype == "BF16") {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, data.data() + 2 * i, 2);
            uint32_t bits = uint32_t(h) << 16;
            std::memcpy(&out[i], &bits, 4);
        }
    } else if (dtype == "U8" || dtype == "BOOL") {
        for (int64_t i = 0; i < n; i++) out[i] = float(data[i]);
    } else {
        fail(EXIT_INPUT, "tensor " + name + ": unsupported safetensors dtype " + dtype);
    }
    return out;
}

const StTensor * StFile::find(const std::string & name) const {
    for (const auto & t : tensors) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

static size_t dtype_size(const std::string & dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    if (dtype == "U8" || dtype == "I8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
    return 0;
}

StFile st_read(const std::string & path) {
    const std::string bytes = read_file(path);
    auto bad = [&](const std::string & why) { fail(EXIT_INPUT, path + ": not a valid safetensors file (" + why + ")"); };
    if (bytes.size() < 8) bad("too short");
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    if (header_len > bytes.size() - 8) bad("header length past end of file");
    json::Value header;
    try {
        header = json::parse(bytes.substr(8, header_len));
    } catch (const std::exception & e) {
        bad(e.what());
    }
    if (header.type != json::Value::Object) bad("header is not an object");
    const size_t data_start = 8 + header_len;
    StFile file;
    for (const auto & [name, info] : header.object) {
        if (name == "__metadata__") {
            for (const auto & [k, v] : info.object) {
                if (v.type == json::Value::String) file.metadata[k] = v.string;
            }
            continue;
        }
        const json::Value * dtype = info.get("dtype");
        const json::Value * shape = info.get("shape");
        const json::Value * offsets = info.get("data_offsets");
        if (!dtype || !shape || !offsets || offsets->array.size() != 2) bad("tensor " + name + " lacks dtype/shape/data_offsets");
        StTensor t;
        t.name = name;
        t.dtype = dtype->string;
        for (const auto & d : shape->array) t.shape.push_back(int64_t(d.number));
        const uint64_t begin = uint64_t(offsets->array[0].number), end = uint64_t(offsets->array[1].number);
        const size_t esize = dtype_size(t.dtype);
        if (esize == 0) bad("tensor " + name + " has unknown dtype " + t.dtype);
        if (end < begin || data_start + end > bytes.size() || end - begin != uint64_t(t.numel()) * esize) {
            bad("tensor " + name + " data_offsets do not match its shape");
        }
        t.data.assign(bytes.begin() + long(data_start + begin), bytes.begin() + long(data_start + end));
        file.tensors.push_back(std::move(t));
    }
    return file;
}

void st_write(const std::string & path, const std::map<std::string, std::string> & metadata,
              const std::vector<StWriteTensor> & tensors) {
    json::Obj header;
    if (!metadata.empty()) {
        json::Obj meta;
        for (const auto & [k, v] : metadata) meta.add(k, v);
        header.raw("__metadata__", meta.str());
    }
    uint64_t offset = 0;
    for (const auto & t : tensors) {
        int64_t n = 1;
        std::string shape = "[";
        for (size_t i = 0; i < t.shape.size(); i++) {
            n *= t.shape[i];
            shape += (i ? "," : "") + std::to_string(t.shape[i]);
        }
        shape += "]";
        const uint64_t end = offset + uint64_t(n) * 4;
        header.raw(t.name, json::Obj()
                               .add("dtype", "F32")
                               .raw("shape", shape)
                               .raw("data_offsets", "[" + std::to_string(offset) + "," + std::to_string(end) + "]")
                               .str());
        offset = end;
    }
    std::string text = header.str();
    while (text.size() % 8 != 0) text += ' ';
    std::vector<uint8_t> out(8 + text.size() + offset);
    const uint64_t len = text.size();
    std::memcpy(out.data(), &len, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    size_t pos = 8 + text.size();
    for (const auto & t : tensors) {
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        std::memcpy(out.data() + pos, t.data, size_t(n) * 4);
        pos += size_t(n) * 4;
    }
    write_file_atomic(path, out);
}

} // namespace lori
