// SQL quoting of identifiers and literals, and qualified names (schema.name).
//
// Invariants:
// - QuoteIdent and QuoteLiteral produce text the server reads back as exactly
//   the input, whatever the session's standard_conforming_strings; every SQL
//   statement lorry builds from names or values goes through them.
// - QualifiedName holds names as the catalogs store them (case kept, no
//   quotes); Quoted() is for SQL, Display() is for people and reads back to
//   the same name through ParseQualifiedName.
// - ParseQualifiedName reads names as psql and PostgreSQL do: unquoted parts
//   folded to lower case (ASCII only, as in UTF-8 databases), quoted parts kept.
#pragma once

#include <compare>
#include <string>
#include <string_view>

#include "common/status.h"

namespace lorry::pg {

// "name", with embedded double quotes doubled. Always quotes, so the result
// never depends on keyword lists or case. PostgreSQL names cannot contain a
// NUL byte; such input is quoted as is and the server rejects it.
std::string QuoteIdent(std::string_view ident);

// The identifier bare when PostgreSQL would read it back unchanged (it matches
// [a-z_][a-z0-9_$]* and is not a keyword that needs quoting), else QuoteIdent.
// Meant for messages; SQL text uses QuoteIdent.
std::string QuoteIdentIfNeeded(std::string_view ident);

// True for keywords that cannot be used as a bare name everywhere: PostgreSQL's
// reserved, type/function-name and column-name keywords (as quote_ident does).
// REQUIRES: word is in lower case.
bool IsKeywordNeedingQuotes(std::string_view word);

// A string literal: '...' with single quotes doubled; when the value holds a
// backslash, E'...' with backslashes doubled too, so that it reads the same
// with standard_conforming_strings on or off. NUL bytes: as for QuoteIdent.
std::string QuoteLiteral(std::string_view value);

struct QualifiedName {
  std::string schema;  // empty when unqualified (search_path decides)
  std::string name;

  // "schema"."name", or "name" when schema is empty: for SQL text.
  std::string Quoted() const;
  // schema.name with each part quoted only where needed: for messages.
  std::string Display() const;

  bool operator==(const QualifiedName&) const = default;
  auto operator<=>(const QualifiedName&) const = default;
};

// Parses `t`, `s.t`, `"My Schema"."we""ird.name"`, with whitespace allowed
// around parts. Errors (kUsage, naming the input): empty input or part, zero-
// length quoted name, unterminated quote, more than two parts, anything else
// that is not a name. Names longer than PostgreSQL's 63 bytes are kept as
// given (the server truncates them when looking them up).
Result<QualifiedName> ParseQualifiedName(std::string_view text);

}  // namespace lorry::pg
