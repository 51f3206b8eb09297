// A small JSON reader (config files, safetensors headers) and writer helpers (JSON lines on stdout).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lori::json {

struct Value {
    enum Type { Null, Bool, Number, String, Array, Object };
    Type type = Null;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> array;
    std::vector<std::pair<std::string, Value>> object;

    const Value * get(const std::string & key) const; // nullptr when absent or not an object
    bool is_null() const { return type == Null; }
};

Value parse(const std::string & text); // throws std::runtime_error with an offset on malformed input

std::string quote(const std::string & s); // a JSON string literal
std::string number(double x);            // shortest round-trip form; non-finite -> null

// Builds one JSON object: Obj().add("event", "step").add("loss", 1.5).str()
class Obj {
public:
    Obj & add(const std::string & key, const std::string & v) { return raw(key, quote(v)); }
    Obj & add(const std::string & key, const char * v) { return raw(key, quote(v)); }
    Obj & add(const std::string & key, double v) { return raw(key, number(v)); }
    Obj & add(const std::string & key, int64_t v) { return raw(key, std::to_string(v)); }
    Obj & add(const std::string & key, int v) { return raw(key, std::to_string(v)); }
    Obj & add(const std::string & key, bool v) { return raw(key, v ? "true" : "false"); }
    Obj & add_null(const std::string & key) { return raw(key, "null"); }
    Obj & raw(const std::string & key, const std::string & json_text);
    std::string str() const { return "{" + body_ + "}"; }

private:
    std::string body_;
};

} // namespace lori::json
