// Helpers shared by the administrative commands (admin/*.cc): connecting to
// either side with errors that name it, the run lock, the origin's progress
// and the subscription's publications.
//
// Every function takes connections it does not own and runs plain catalog
// queries; none of them changes anything on either server.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"
#include "config/config.h"
#include "pg/connection.h"
#include "pg/quote.h"
#include "state/names.h"

namespace lorry::admin {

// Connects to the provider / subscriber of `config`. Errors are kConnection
// (kUsage when the connection string is missing) and name the side; they
// never hold a password.
Result<pg::PgConn> ConnectProvider(const Config& config);
Result<pg::PgConn> ConnectSubscriber(const Config& config);

// Whether a `lorry run` of subscription `name` holds its run lock
// (kRunLockClass, hashtext(name)) in the subscriber's database.
Result<bool> RunIsActive(pg::PgConn& subscriber, const std::string& name);

// Where the active run says it is ("pid 123 on host db1"), or "" when unknown.
std::string RunHolder(pg::PgConn& subscriber, const std::string& name);

// The origin's progress (pg_replication_origin_progress(origin, flush)): the
// end LSN of the last provider commit applied. nullopt when the origin does
// not exist, has no progress yet, or the user may not read it.
std::optional<Lsn> OriginProgress(pg::PgConn& subscriber, const std::string& origin, bool flush);

Result<bool> PublicationExists(pg::PgConn& provider, const std::string& publication);

// The tables of the subscription's publications on the provider
// (catalog/publications.h).
struct PublicationMember {
  pg::QualifiedName table;
  bool insert_only = false;  // in the _insert_only publication
  std::string publication;
};
Result<std::vector<PublicationMember>> ListPublicationMembers(pg::PgConn& provider, const SubscriptionNames& names);

// The precondition error of a command run before `lorry init`.
Status NotInitialised(const std::string& name);

// `word` quoted for a POSIX shell when it needs it, for commands we suggest.
std::string ShellQuote(const std::string& word);

// Whether `pattern` (of `add --exclude`) matches a table: "schema.table" or
// "table" (any schema), each part an SQL LIKE pattern (% and _) or a glob
// (* and ?), compared case-sensitively with the unquoted names; a backslash
// takes the next character literally.
bool NameMatches(std::string_view pattern, const pg::QualifiedName& name);

// "1.5 MB", "320 kB", "12 bytes".
std::string HumanBytes(int64_t bytes);

}  // namespace lorry::admin
