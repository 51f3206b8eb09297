// Process I/O: JSON-lines events on stdout (the only thing written there), files, interrupt flag, peak RSS.
#pragma once

#include "json.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lori {

void emit(const json::Obj & event);                    // one line on stdout, flushed
void emit_error(int code, const std::string & message); // {"event":"error","code":..,"message":..}
void warn(const std::string & message);                 // {"event":"warning","message":..}

std::string read_file(const std::string & path);                                  // throws Error(EXIT_INPUT)
void write_file_atomic(const std::string & path, const std::vector<uint8_t> & data); // path.tmp + rename
bool file_exists(const std::string & path);

void install_interrupt_handlers(); // SIGINT/SIGTERM set a flag instead of killing the process
bool interrupted();

double peak_rss_mb();
double now_s(); // monotonic seconds

} // namespace lori
