// The JSON config file (argv[1]): typed accessors that remember which keys were read, so unknown keys
// (typos) are rejected with EXIT_USAGE. The schema is documented in native/README.md.
#pragma once

#include "json.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace lori {

class Config {
public:
    explicit Config(json::Value root);
    static Config load(const std::string & path); // throws Error(EXIT_USAGE)

    bool has(const std::string & key) const;
    std::string str(const std::string & key) const;                       // required
    std::string str(const std::string & key, const std::string & def) const;
    double num(const std::string & key) const;                              // required
    double num(const std::string & key, double def) const;
    int64_t integer(const std::string & key, int64_t def) const;           // must be an integer value
    int64_t integer(const std::string & key) const;
    uint64_t seed(const std::string & key, uint64_t def) const;            // 0 .. 2^53-1
    bool boolean(const std::string & key, bool def) const;
    std::vector<std::string> strings(const std::string & key, const std::vector<std::string> & def) const;
    const json::Value & value(const std::string & key) const;              // required, any type

    void reject_unknown_keys() const; // call after a mode has read everything it understands

private:
    const json::Value * find(const std::string & key) const;
    json::Value root_;
    mutable std::set<std::string> used_;
};

} // namespace lori
