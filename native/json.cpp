#include "json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace lori::json {

const Value * Value::get(const std::string & key) const {
    if (type != Object) return nullptr;
    for (const auto & kv : object) {
        if (kv.first == key) return &kv.second;
    }
    return nullptr;
}

namespace {

struct Parser {
    const std::string & s;
    size_t i = 0;

    [[noreturn]] void error(const char * what) const {
        throw std::runtime_error(std::string("invalid JSON at offset ") + std::to_string(i) + ": " + what);
    }
    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    }
    bool literal(const char * word) {
        size_t n = 0;
        while (word[n]) n++;
        if (s.compare(i, n, word) == 0) { i += n; return true; }
        return false;
    }
    static void utf8(std::string & out, uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
        else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
    }
    uint32_t hex4() {
        if (i + 4 > s.size()) error("truncated \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else error("bad \\u escape");
        }
        return v;
    }
    std::string str() {
        if (s[i] != '"') error("expected string");
        i++;
        std::string out;
        while (true) {
            if (i >= s.size()) error("unterminated string");
            char c = s[i++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            if (i >= s.size()) error("unterminated escape");
            char e = s[i++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
                        i += 2;
                        uint32_t lo = hex4();
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    utf8(out, cp);
                } break;
                default: error("bad escape");
            }
        }
    }
    Value value(int depth) {
        if (depth > 64) error("nested too deeply");
        ws();
        if (i >= s.size()) error("unexpected end");
        Value v;
        char c = s[i];
        if (c == '{') {
            v.type = Value::Object;
            i++;
            ws();
            if (i < s.size() && s[i] == '}') { i++; return v; }
            while (true) {
                ws();
                if (i >= s.size()) error("unexpected end in object");
                std::string key = str();
                ws();
                if (i >= s.size() || s[i] != ':') error("expected ':'");
                i++;
                v.object.emplace_back(std::move(key), value(depth + 1));
                ws();
                if (i < s.size() && s[i] == ',') { i++; continue; }
                if (i < s.size() && s[i] == '}') { i++; return v; }
                error("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.type = Value::Array;
            i++;
            ws();
            if (i < s.size() && s[i] == ']') { i++; return v; }
            while (true) {
                v.array.push_back(value(depth + 1));
                ws();
                if (i < s.size() && s[i] == ',') { i++; continue; }
                if (i < s.size() && s[i] == ']') { i++; return v; }
                error("expected ',' or ']'");
            }
        }
        if (c == '"') { v.type = Value::String; v.string = str(); return v; }
        if (literal("true")) { v.type = Value::Bool; v.boolean = true; return v; }
        if (literal("false")) { v.type = Value::Bool; v.boolean = false; return v; }
        if (literal("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            const char * begin = s.c_str() + i;
            char * end = nullptr;
            v.type = Value::Number;
            v.number = std::strtod(begin, &end);
            if (end == begin) error("bad number");
            i += size_t(end - begin);
            return v;
        }
        error("unexpected character");
    }
};

} // namespace

Value parse(const std::string & text) {
    Parser p{text};
    Value v = p.value(0);
    p.ws();
    if (p.i != text.size()) p.error("trailing characters");
    return v;
}

std::string quote(const std::string & s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += char(c);
                }
        }
    }
    return out + "\"";
}

std::string number(double x) {
    if (!std::isfinite(x)) return "null";
    char buf[32];
    for (int prec = 6; prec <= 17; prec++) { // shortest representation that round-trips
        std::snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (std::strtod(buf, nullptr) == x) break;
    }
    return buf;
}

Obj & Obj::raw(const std::string & key, const std::string & json_text) {
    if (!body_.empty()) body_ += ',';
    body_ += quote(key);
    body_ += ':';
    body_ += json_text;
    return *this;
}

} // namespace lori::json
