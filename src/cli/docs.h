// The man page lorry(1) and the bash completion, generated from the command
// line itself (BuildApp): every command and option with its help text, so
// that neither can drift from `lorry --help`. Hidden commands and options
// (CLI11 group "") are left out. `lorry_docs` (tools/) writes both at build
// time; the package installs them.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace lorry::cli {

// troff with the man macros, section 1.
std::string ManPage(const CLI::App& app, const std::string& version);

// A bash script defining _lorry and `complete -F _lorry lorry`.
std::string BashCompletion(const CLI::App& app);

}  // namespace lorry::cli
