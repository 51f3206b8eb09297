#include "config.h"

#include "errors.h"
#include "io.h"

#include <cmath>

namespace lori {

Config::Config(json::Value root) : root_(std::move(root)) {
    if (root_.type != json::Value::Object) fail(EXIT_USAGE, "config must be a JSON object");
}

Config Config::load(const std::string & path) {
    std::string text;
    try {
        text = read_file(path);
    } catch (const Error & e) {
        fail(EXIT_USAGE, e.what());
    }
    try {
        return Config(json::parse(text));
    } catch (const Error &) {
        throw;
    } catch (const std::exception & e) {
        fail(EXIT_USAGE, "config " + path + ": " + e.what());
    }
}

const json::Value * Config::find(const std::string & key) const {
    used_.insert(key);
    const json::Value * v = root_.get(key);
    return (v && !v->is_null()) ? v : nullptr;
}

bool Config::has(const std::string & key) const { return find(key) != nullptr; }

const json::Value & Config::value(const std::string & key) const {
    const json::Value * v = find(key);
    if (!v) fail(EXIT_USAGE, "config: \"" + key + "\" is required");
    return *v;
}

std::string Config::str(const std::string & key) const {
    const json::Value & v = value(key);
    if (v.type != json::Value::String) fail(EXIT_USAGE, "config: \"" + key + "\" must be a string");
    return v.string;
}

std::string Config::str(const std::string & key, const std::string & def) const { return has(key) ? str(key) : def; }

double Config::num(const std::string & key) const {
    const json::Value & v = value(key);
    if (v.type != json::Value::Number) fail(EXIT_USAGE, "config: \"" + key + "\" must be a number");
    return v.number;
}

double Config::num(const std::string & key, double def) const { return has(key) ? num(key) : def; }

int64_t Config::integer(const std::string & key) const {
    const double x = num(key);
    if (x != std::floor(x) || std::fabs(x) > 9007199254740991.0) fail(EXIT_USAGE, "config: \"" + key + "\" must be an integer");
    return int64_t(x);
}

int64_t Config::integer(const std::string & key, int64_t def) const { return has(key) ? integer(key) : def; }

uint64_t Config::seed(const std::string & key, uint64_t def) const {
    if (!has(key)) return def;
    const int64_t s = integer(key);
    if (s < 0) fail(EXIT_USAGE, "config: \"" + key + "\" must be in 0 .. 2^53-1");
    return uint64_t(s);
}

bool Config::boolean(const std::string & key, bool def) const {
    const json::Value * v = find(key);
    if (!v) return def;
    if (v->type != json::Value::Bool) fail(EXIT_USAGE, "config: \"" + key + "\" must be true or false");
    return v->boolean;
}

std::vector<std::string> Config::strings(const std::string & key, const std::vector<std::string> & def) const {
    const json::Value * v = find(key);
    if (!v) return def;
    if (v->type != json::Value::Array) fail(EXIT_USAGE, "config: \"" + key + "\" must be an array of strings");
    std::vector<std::string> out;
    for (const auto & e : v->array) {
        if (e.type != json::Value::String) fail(EXIT_USAGE, "config: \"" + key + "\" must be an array of strings");
        out.push_back(e.string);
    }
    return out;
}

void Config::reject_unknown_keys() const {
    for (const auto & [k, v] : root_.object) {
        if (!used_.count(k)) fail(EXIT_USAGE, "config: unknown key \"" + k + "\" for this mode");
    }
}

} // namespace lori
