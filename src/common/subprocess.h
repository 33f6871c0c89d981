// Running a helper program (pg_dump, pg_restore) and capturing its output.
//
// The program is executed directly (no shell), so no argument is ever
// interpreted; secrets must not be passed as arguments (they would show in
// `ps`): pass them through `env` (e.g. PGSERVICEFILE pointing at a 0600 file).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace lorry {

struct ProgramOutput {
  int exit_code = -1;  // 128+signal when killed by a signal
  std::string out;     // stdout, bytes as written
  std::string err;     // stderr
};

// Runs argv[0] (searched in PATH when it has no '/') with argv, the current
// environment plus `env` (which overrides), and stdin from /dev/null.
// Errors: kPrecondition when the program cannot be started (not found, not
// executable), naming it. A non-zero exit is not an error here: see exit_code.
Result<ProgramOutput> RunProgram(const std::vector<std::string>& argv,
                                 const std::vector<std::pair<std::string, std::string>>& env = {});

}  // namespace lorry
