// A connection service file (pg_service.conf) for one conninfo, so that a
// libpq program we start (pg_dump, pg_restore) reaches the same server without
// the conninfo, and its password, on its command line.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace lorry::pg {

// The text of a service file with one section [service] holding every key
// libpq parses from `conninfo` (URIs too). Use it with PGSERVICEFILE=<file>
// and PGSERVICE=<service>; the file holds the password: write it mode 0600.
// kUsage when the conninfo does not parse or a value holds a line break.
Result<std::string> ServiceFileText(std::string_view conninfo, std::string_view service);

}  // namespace lorry::pg
