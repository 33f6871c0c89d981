// Connection strings: validation, and keeping passwords out of anything printed.
//
// Invariants:
// - RedactConninfo never returns any part of a password, whether the input is
//   a key=value string or a postgres:// URI, valid or not.
// - RedactSecrets is idempotent and errs on the side of hiding too much: an
//   unquoted password value runs to the next whitespace.
// - Every conninfo or server message that may reach a log line or the
//   terminal goes through one of the two.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace lorry::pg {

// Printed in place of a secret.
inline constexpr std::string_view kRedacted = "********";

// A human label for a conninfo: "host=h port=5432 dbname=d user=u", only the
// keys that were given (host, hostaddr, port, dbname, user first, then the
// rest in libpq's order), with any password shown as ********. Parsed with
// libpq, so URIs come out in the same key=value form. Returns
// "<libpq defaults>" for an empty string and "<unparsable conninfo>" when
// libpq cannot parse it.
std::string RedactConninfo(std::string_view conninfo);

// Scrubs secrets from arbitrary text (libpq errors, log lines):
// - password=VALUE (any case, also sslpassword=, PGPASSWORD=; spaces around
//   '=' allowed; VALUE single- or double-quoted with backslash escapes, or
//   unquoted up to whitespace; in a URI query, up to '&' or '#'),
// - URI user info: scheme://user:SECRET@host (up to the last '@' before the
//   path, so a raw '@' in the password is hidden too).
// Each SECRET becomes ********.
std::string RedactSecrets(std::string_view text);

// True when `conninfo` itself holds a password (password=..., or the
// user:password@ of a URI), as libpq parses it.
bool ConninfoHasPassword(std::string_view conninfo);

// Ok if libpq can parse `conninfo` (empty is fine: libpq then uses PG*
// environment variables and defaults). Else kUsage naming `key` (e.g.
// "provider") with libpq's reason; when the string holds a password, quoted
// fragments of libpq's reason are hidden, since they may be part of it.
Status ValidateConninfo(std::string_view conninfo, std::string_view key);

}  // namespace lorry::pg
