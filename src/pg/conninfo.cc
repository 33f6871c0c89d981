// Connection-string validation and redaction; see conninfo.h for the contract.
//
// libpq does the parsing (PQconninfoParse understands both key=value strings
// and URIs exactly as a connection will), so a label is rebuilt from what
// libpq parsed, never copied from the input. RedactSecrets is a plain scanner
// because it must work on text that is not a conninfo at all.
#include "pg/conninfo.h"

#include <libpq-fe.h>

#include <memory>
#include <vector>

#include <fmt/format.h>

namespace lorry::pg {

namespace {

struct OptionsFree {
  void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};
using OptionsPtr = std::unique_ptr<PQconninfoOption, OptionsFree>;

std::string TrimRight(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Null (with *error set to libpq's reason) when libpq rejects the string.
OptionsPtr Parse(std::string_view conninfo, std::string* error) {
  if (conninfo.find('\0') != std::string_view::npos) {
    *error = "contains a NUL byte";
    return nullptr;
  }
  std::string copy(conninfo);
  char* err = nullptr;
  OptionsPtr opts(PQconninfoParse(copy.c_str(), &err));
  if (!opts) *error = err ? TrimRight(err) : "out of memory";
  if (err) PQfreemem(err);
  return opts;
}

bool IsSecretOption(const PQconninfoOption& o) {
  std::string_view key = o.keyword;
  return (o.dispchar && o.dispchar[0] == '*') || key.find("password") != std::string_view::npos ||
         key.find("secret") != std::string_view::npos;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// A value as libpq's key=value syntax wants it: bare when it can be, else
// single-quoted with ' and \ escaped by a backslash.
std::string ConninfoValue(std::string_view v) {
  bool bare = !v.empty();
  for (char c : v)
    if (IsSpace(c) || c == '\'' || c == '\\') bare = false;
  if (bare) return std::string(v);
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

size_t FindNoCase(std::string_view text, std::string_view word, size_t from) {
  for (size_t i = from; i + word.size() <= text.size(); ++i) {
    size_t k = 0;
    while (k < word.size() && AsciiLower(text[i + k]) == word[k]) ++k;
    if (k == word.size()) return i;
  }
  return std::string_view::npos;
}

// scheme://user:SECRET@host -> scheme://user:********@host.
std::string RedactUriUserInfo(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (true) {
    size_t scheme_end = text.find("://", i);
    if (scheme_end == std::string_view::npos) break;
    size_t auth = scheme_end + 3;
    size_t auth_end = auth;
    while (auth_end < text.size() && text[auth_end] != '/' && text[auth_end] != '?' && text[auth_end] != '#' &&
           !IsSpace(text[auth_end]))
      ++auth_end;
    std::string_view authority = text.substr(auth, auth_end - auth);
    size_t at = authority.rfind('@');
    size_t colon = authority.find(':');
    out.append(text.substr(i, auth - i));
    if (at != std::string_view::npos && colon < at) {
      out.append(authority.substr(0, colon + 1));
      out.append(kRedacted);
      out.append(authority.substr(at));
    } else {
      out.append(authority);
    }
    i = auth_end;
  }
  out.append(text.substr(i));
  return out;
}

// Where a password value starting at `v` ends. Quoted values end after the
// closing quote (backslash escapes as in libpq), or at the end of the text.
size_t ValueEnd(std::string_view text, size_t v, bool in_uri_query) {
  if (v < text.size() && (text[v] == '\'' || text[v] == '"')) {
    char q = text[v];
    for (size_t i = v + 1; i < text.size(); ++i) {
      if (text[i] == '\\') {
        ++i;
      } else if (text[i] == q) {
        return i + 1;
      }
    }
    return text.size();
  }
  size_t i = v;
  while (i < text.size() && !IsSpace(text[i]) && !(in_uri_query && (text[i] == '&' || text[i] == '#'))) ++i;
  return i;
}

// An earlier redaction: ******** followed by the end or a delimiter.
bool IsRedactedAt(std::string_view text, size_t v) {
  if (text.substr(v, kRedacted.size()) != kRedacted) return false;
  size_t after = v + kRedacted.size();
  if (after == text.size()) return true;
  char c = text[after];
  return IsSpace(c) || std::string_view(")],;&#}").find(c) != std::string_view::npos;
}

// password=SECRET -> password=********, keeping quotes around quoted values.
std::string RedactPasswordValues(std::string_view text) {
  constexpr std::string_view kWord = "password";
  std::string out;
  size_t i = 0;
  while (true) {
    size_t k = FindNoCase(text, kWord, i);
    if (k == std::string_view::npos) break;
    size_t j = k + kWord.size();
    while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
    if (j == text.size() || text[j] != '=') {
      out.append(text.substr(i, k + kWord.size() - i));
      i = k + kWord.size();
      continue;
    }
    size_t v = j + 1;
    while (v < text.size() && (text[v] == ' ' || text[v] == '\t')) ++v;
    out.append(text.substr(i, v - i));
    if (IsRedactedAt(text, v)) {
      out.append(kRedacted);
      i = v + kRedacted.size();
      continue;
    }
    size_t word_start = k;
    while (word_start > 0 && IsWordChar(text[word_start - 1])) --word_start;
    bool in_uri_query = word_start > 0 && (text[word_start - 1] == '?' || text[word_start - 1] == '&');
    size_t end = ValueEnd(text, v, in_uri_query);
    bool quoted = v < text.size() && (text[v] == '\'' || text[v] == '"');
    if (quoted) out.push_back(text[v]);
    out.append(kRedacted);
    if (quoted && end > v + 1 && text[end - 1] == text[v]) out.push_back(text[v]);
    i = end;
  }
  out.append(text.substr(i));
  return out;
}

// Replaces the inside of each "..." in a libpq message by "...", except single
// punctuation ("=") and already-redacted text; *hidden tells if any was.
std::string HideQuotedFragments(std::string_view msg, bool* hidden) {
  std::string out;
  size_t i = 0;
  while (true) {
    size_t open = msg.find('"', i);
    if (open == std::string_view::npos) break;
    size_t close = msg.find('"', open + 1);
    if (close == std::string_view::npos) break;
    std::string_view inner = msg.substr(open + 1, close - open - 1);
    bool keep = (inner.size() == 1 && !IsWordChar(inner[0])) || inner.find(kRedacted) != std::string_view::npos;
    out.append(msg.substr(i, open + 1 - i));
    out.append(keep ? inner : "...");
    *hidden = *hidden || !keep;
    out.push_back('"');
    i = close + 1;
  }
  out.append(msg.substr(i));
  return out;
}

}  // namespace

std::string RedactConninfo(std::string_view conninfo) {
  std::string error;
  OptionsPtr opts = Parse(conninfo, &error);
  if (!opts) return "<unparsable conninfo>";

  static constexpr std::string_view kFirst[] = {"host", "hostaddr", "port", "dbname", "user"};
  std::vector<const PQconninfoOption*> order;
  for (std::string_view key : kFirst)
    for (const PQconninfoOption* o = opts.get(); o->keyword; ++o)
      if (key == o->keyword) order.push_back(o);
  for (const PQconninfoOption* o = opts.get(); o->keyword; ++o) {
    bool first = false;
    for (std::string_view key : kFirst) first = first || key == o->keyword;
    if (!first) order.push_back(o);
  }

  std::string out;
  for (const PQconninfoOption* o : order) {
    if (!o->val) continue;
    if (!out.empty()) out.push_back(' ');
    out += o->keyword;
    out.push_back('=');
    // A value may itself be a conninfo (dbname is expanded by libpq), so
    // even non-secret values are scrubbed.
    out += IsSecretOption(*o) ? std::string(kRedacted) : ConninfoValue(RedactSecrets(o->val));
  }
  return out.empty() ? "<libpq defaults>" : out;
}

std::string RedactSecrets(std::string_view text) { return RedactPasswordValues(RedactUriUserInfo(text)); }

bool ConninfoHasPassword(std::string_view conninfo) {
  std::string error;
  OptionsPtr opts = Parse(conninfo, &error);
  if (!opts) return RedactSecrets(conninfo) != conninfo;  // unparsable: as much as the scanner sees
  for (const PQconninfoOption* o = opts.get(); o->keyword; ++o)
    if (std::string_view(o->keyword) == "password" && o->val && *o->val) return true;
  return false;
}

Status ValidateConninfo(std::string_view conninfo, std::string_view key) {
  std::string error;
  if (Parse(conninfo, &error)) return Status::Ok();
  error = RedactSecrets(error);
  bool hidden = false;
  if (RedactSecrets(conninfo) != conninfo) error = HideQuotedFragments(error, &hidden);
  if (hidden) error += " (quoted parts hidden: the string holds a password)";
  return Status::Usage(fmt::format("{}: invalid connection string: {}", key, error));
}

}  // namespace lorry::pg
