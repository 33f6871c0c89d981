// SQL quoting and qualified-name parsing; see quote.h for the contract.
//
// The keyword list is PostgreSQL's (src/include/parser/kwlist.h, up to 18),
// every keyword not in the UNRESERVED category: those are the ones that
// quote_ident() quotes, so what Display() prints bare is a valid bare name in
// any position. Keep it sorted: lookup is a binary search.
#include "pg/quote.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include <fmt/format.h>

namespace lorry::pg {

namespace {

// clang-format off
constexpr std::string_view kKeywordsNeedingQuotes[] = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc",
    "asymmetric", "authorization", "between", "bigint", "binary", "bit",
    "boolean", "both", "case", "cast", "char", "character", "check",
    "coalesce", "collate", "collation", "column", "concurrently",
    "constraint", "create", "cross", "current_catalog", "current_date",
    "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "dec", "decimal", "default", "deferrable", "desc",
    "distinct", "do", "else", "end", "except", "exists", "extract", "false",
    "fetch", "float", "for", "foreign", "freeze", "from", "full", "grant",
    "greatest", "group", "grouping", "having", "ilike", "in", "initially",
    "inner", "inout", "int", "integer", "intersect", "interval", "into", "is",
    "isnull", "join", "json", "json_array", "json_arrayagg", "json_exists",
    "json_object", "json_objectagg", "json_query", "json_scalar",
    "json_serialize", "json_table", "json_value", "lateral", "leading",
    "least", "left", "like", "limit", "localtime", "localtimestamp",
    "merge_action", "national", "natural", "nchar", "none", "normalize",
    "not", "notnull", "null", "nullif", "numeric", "offset", "on", "only",
    "or", "order", "out", "outer", "overlaps", "overlay", "placing",
    "position", "precision", "primary", "real", "references", "returning",
    "right", "row", "select", "session_user", "setof", "similar", "smallint",
    "some", "substring", "symmetric", "system_user", "table", "tablesample",
    "then", "time", "timestamp", "to", "trailing", "treat", "trim", "true",
    "union", "unique", "user", "using", "values", "varchar", "variadic",
    "verbose", "when", "where", "window", "with", "xmlattributes",
    "xmlconcat", "xmlelement", "xmlexists", "xmlforest", "xmlnamespaces",
    "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable",
};
// clang-format on

constexpr bool IsSorted() {
  for (size_t i = 1; i < std::size(kKeywordsNeedingQuotes); ++i)
    if (!(kKeywordsNeedingQuotes[i - 1] < kKeywordsNeedingQuotes[i])) return false;
  return true;
}
static_assert(IsSorted(), "kKeywordsNeedingQuotes must be sorted for binary search");

bool IsLowerStart(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
bool IsLowerCont(char c) { return IsLowerStart(c) || (c >= '0' && c <= '9') || c == '$'; }

// PostgreSQL's scanner: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9$].
bool IsIdentStart(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || u >= 0x80;
}
bool IsIdentCont(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '$'; }

// PostgreSQL's scanner whitespace.
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The (possibly multi-byte UTF-8) character at `pos`, for error messages.
std::string_view CharAt(std::string_view text, size_t pos) {
  size_t end = pos + 1;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
  return text.substr(pos, end - pos);
}

// Reads names separated by dots; the caller checks how many there were.
class NameParser {
 public:
  explicit NameParser(std::string_view text) : text_(text) {}

  Status Parse(std::vector<std::string>* parts) {
    if (text_.find('\0') != std::string_view::npos) return Error("contains a NUL byte");
    SkipSpace();
    if (pos_ == text_.size()) return Error("empty name");
    while (true) {
      std::string part;
      LORRY_RETURN_IF_ERROR(ReadPart(&part));
      parts->push_back(std::move(part));
      SkipSpace();
      if (pos_ == text_.size()) return Status::Ok();
      if (text_[pos_] != '.') return Unexpected();
      ++pos_;
      SkipSpace();
    }
  }

 private:
  Status ReadPart(std::string* out) {
    if (pos_ == text_.size() || text_[pos_] == '.') return Error("empty name part");
    if (text_[pos_] == '"') return ReadQuoted(out);
    if (!IsIdentStart(text_[pos_])) return Unexpected();
    while (pos_ < text_.size() && IsIdentCont(text_[pos_])) out->push_back(AsciiLower(text_[pos_++]));
    return Status::Ok();
  }

  Status ReadQuoted(std::string* out) {
    size_t start = pos_++;
    while (true) {
      size_t close = text_.find('"', pos_);
      if (close == std::string_view::npos) {
        pos_ = start;
        return Error(fmt::format("unterminated quoted name at offset {}", start));
      }
      out->append(text_.substr(pos_, close - pos_));
      pos_ = close + 1;
      if (pos_ < text_.size() && text_[pos_] == '"') {  // "" is one quote
        out->push_back('"');
        ++pos_;
        continue;
      }
      break;
    }
    if (out->empty()) return Error(fmt::format("zero-length quoted name at offset {}", start));
    return Status::Ok();
  }

  void SkipSpace() {
    while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
  }

  Status Unexpected() const {
    std::string_view c = CharAt(text_, pos_);
    std::string hint;
    if (c[0] >= '0' && c[0] <= '9') hint = " (a name starting with a digit must be double-quoted)";
    return Error(fmt::format("unexpected '{}' at offset {}{}", c, pos_, hint));
  }

  Status Error(const std::string& why) const {
    return Status::Usage(fmt::format("invalid name '{}': {}", text_, why));
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::string QuoteIdent(std::string_view ident) {
  std::string out;
  out.reserve(ident.size() + 2);
  out.push_back('"');
  for (char c : ident) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

bool IsKeywordNeedingQuotes(std::string_view word) {
  return std::binary_search(std::begin(kKeywordsNeedingQuotes), std::end(kKeywordsNeedingQuotes), word);
}

std::string QuoteIdentIfNeeded(std::string_view ident) {
  bool bare = !ident.empty() && IsLowerStart(ident[0]) && std::all_of(ident.begin(), ident.end(), IsLowerCont) &&
              !IsKeywordNeedingQuotes(ident);
  return bare ? std::string(ident) : QuoteIdent(ident);
}

std::string QuoteLiteral(std::string_view value) {
  bool has_backslash = value.find('\\') != std::string_view::npos;
  std::string out;
  out.reserve(value.size() + 3);
  if (has_backslash) out.push_back('E');
  out.push_back('\'');
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back(c);
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string QualifiedName::Quoted() const {
  if (schema.empty()) return QuoteIdent(name);
  return QuoteIdent(schema) + "." + QuoteIdent(name);
}

std::string QualifiedName::Display() const {
  if (schema.empty()) return QuoteIdentIfNeeded(name);
  return QuoteIdentIfNeeded(schema) + "." + QuoteIdentIfNeeded(name);
}

Result<QualifiedName> ParseQualifiedName(std::string_view text) {
  std::vector<std::string> parts;
  LORRY_RETURN_IF_ERROR(NameParser(text).Parse(&parts));
  if (parts.size() > 2)
    return Status::Usage(fmt::format("invalid name '{}': more than two parts (expected name or schema.name)", text));
  if (parts.size() == 1) return QualifiedName{"", std::move(parts[0])};
  return QualifiedName{std::move(parts[0]), std::move(parts[1])};
}

}  // namespace lorry::pg
