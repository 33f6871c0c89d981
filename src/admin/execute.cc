// `lorry execute FILE.sql [--add TABLE...]`: runs a script on the provider in
// one transaction that also emits a lorry message carrying it (see
// apply/lorry_message.h); the subscriber runs the same script when its
// stream reaches that message, before any later change.
//
// Invariants:
// - The message is emitted first in the transaction, before the script: on
//   the subscriber the script's schema changes exist before any change that
//   depends on them. Nothing is committed unless the script succeeded.
// - lorry's DDL capture trigger skips this transaction (lorry.executing),
//   so the script is not sent twice.
// - Tables named by --add join the subscription's publication in the same
//   transaction; on the subscriber they are recorded as `pending` right
//   after the script ran there, and `run` copies them.
#include <fstream>
#include <ostream>
#include <sstream>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "apply/lorry_message.h"
#include "catalog/catalog.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

Result<std::string> ReadScript(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::Usage(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << f.rdbuf();
  std::string sql = ss.str();
  if (sql.find_first_not_of(" \t\r\n") == std::string::npos) return Status::Usage(path + " is empty");
  return sql;
}

// The tables of --add, qualified as the script will create them: an
// unqualified name goes to the provider session's current_schema().
Result<std::vector<pg::QualifiedName>> ResolveAdd(pg::PgConn& provider, const std::vector<std::string>& names) {
  std::vector<pg::QualifiedName> out;
  for (const auto& text : names) {
    LORRY_ASSIGN_OR_RETURN(auto name, pg::ParseQualifiedName(text));
    if (name.schema.empty()) {
      LORRY_ASSIGN_OR_RETURN(auto schema, provider.QueryValue("SELECT current_schema()"));
      if (!schema) return Status::Precondition("--add: the provider session has no current schema (search_path)");
      name.schema = *schema;
    }
    out.push_back(std::move(name));
  }
  return out;
}

// After the script: each --add table must exist and be publishable.
Status PublishAdded(pg::PgConn& provider, const SubscriptionNames& names, const std::vector<pg::QualifiedName>& add) {
  for (const auto& t : add) {
    LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, t));
    if (!info)
      return Status::Precondition(fmt::format("--add {}: no such table after the script ran; nothing was committed",
                                              t.Display()));
    if (!info->HasUsableIdentity())
      return Status::Precondition(fmt::format(
          "--add {}: the table has no primary key or replica identity, so its UPDATEs and DELETEs could not be "
          "published; give it a primary key in the script. Nothing was committed",
          t.Display()));
    LORRY_RETURN_IF_ERROR(provider
                              .Exec(fmt::format("ALTER PUBLICATION {} ADD TABLE {}{}", pg::QuoteIdent(names.publication),
                                                info->relkind == 'p' ? "" : "ONLY ", t.Quoted()))
                              .status()
                              .WithContext("--add " + t.Display()));
  }
  return Status::Ok();
}

}  // namespace

std::optional<std::string> FindTransactionControl(std::string_view sql) {
  // A small lexer: comments, quoted identifiers, string literals and dollar
  // quotes are skipped; the first word of each top-level statement is checked.
  static const char* kControl[] = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
                                   "PREPARE"};
  size_t i = 0, n = sql.size();
  bool statement_start = true;
  while (i < n) {
    char c = sql[i];
    if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') i++;
      continue;
    }
    if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 0;
      while (i < n) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') depth++, i += 2;
        else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') { i += 2; if (--depth == 0) break; }
        else i++;
      }
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(c))) {
      i++;
      continue;
    }
    if (c == ';') {
      statement_start = true;
      i++;
      continue;
    }
    if (statement_start && std::isalpha(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < n && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) j++;
      std::string word(sql.substr(i, j - i));
      for (auto& ch : word) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      for (const char* k : kControl)
        if (word == k) return word;
      statement_start = false;
      i = j;
      continue;
    }
    statement_start = false;
    if (c == '\'' || c == '"') {
      bool backslash = c == '\'' && i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e');
      i++;
      while (i < n) {
        if (backslash && sql[i] == '\\') { i += 2; continue; }
        if (sql[i] == c) {
          if (i + 1 < n && sql[i + 1] == c) { i += 2; continue; }
          break;
        }
        i++;
      }
      i++;
      continue;
    }
    if (c == '$') {
      size_t j = i + 1;
      while (j < n && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) j++;
      if (j < n && sql[j] == '$' && !(j > i + 1 && std::isdigit(static_cast<unsigned char>(sql[i + 1])))) {
        std::string tag(sql.substr(i, j - i + 1));
        size_t end = sql.find(tag, j + 1);
        i = end == std::string_view::npos ? n : end + tag.size();
        continue;
      }
    }
    i++;
  }
  return std::nullopt;
}

Status Execute(const Config& config, const ExecuteOptions& options, std::ostream& out) {
  if (options.file.empty()) return Status::Usage("name the SQL file to run: `lorry execute FILE.sql`");
  LORRY_ASSIGN_OR_RETURN(std::string sql, ReadScript(options.file));
  if (auto word = FindTransactionControl(sql))
    return Status::Usage(fmt::format("{} holds a {} statement: lorry execute runs the whole script in one "
                                     "transaction of its own (on both sides); remove the transaction control",
                                     options.file, *word));
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_RETURN_IF_ERROR(apply::RequireMessageSupport(provider.server_version(), "lorry execute"));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(bool installed, StateStore(&subscriber, names.name).IsInstalled());
  if (!installed) return NotInitialised(names.name);
  // Without the slot, nothing would carry the message to the subscriber.
  LORRY_ASSIGN_OR_RETURN(auto slot, provider.QueryValue("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                                                        {names.slot}));
  if (!slot)
    return Status::Precondition(fmt::format(
        "replication slot {} does not exist yet, so the subscriber would never see the script: start `lorry run` "
        "once (it creates the slot), then run `lorry execute` again. Nothing was executed",
        names.slot));

  LORRY_ASSIGN_OR_RETURN(auto add, ResolveAdd(provider, options.add));
  apply::LorryMessage msg;
  msg.kind = apply::LorryMessage::Kind::kExecute;
  msg.for_subscriptions = {names.name};
  msg.sql = sql;
  msg.add = add;
  LORRY_ASSIGN_OR_RETURN(auto path, provider.QueryValue("SELECT current_setting('search_path')"));
  msg.search_path = path.value_or("");

  LORRY_RETURN_IF_ERROR(provider.Exec("BEGIN").status());
  std::string lsn;
  auto body = [&]() -> Status {
    // lorry's DDL capture trigger leaves this transaction alone.
    LORRY_RETURN_IF_ERROR(provider.Exec("SET LOCAL lorry.executing = 'on'").status());
    LORRY_ASSIGN_OR_RETURN(auto emitted, provider.QueryValue("SELECT pg_logical_emit_message(true, $1, $2)::text",
                                                             {apply::kLorryMessagePrefix, apply::EncodeLorryMessage(msg)}));
    lsn = emitted.value_or("?");
    LORRY_RETURN_IF_ERROR(
        provider.Exec(sql).status().WithContext(fmt::format("running {} on the provider", options.file)));
    if (PQtransactionStatus(provider.raw()) != PQTRANS_INTRANS)
      return Status::Precondition(fmt::format("{} ended lorry's transaction on the provider; remove its transaction "
                                              "control statements",
                                              options.file));
    return PublishAdded(provider, names, add);
  };
  Status s = body();
  if (!s.ok()) {
    (void)provider.Exec("ROLLBACK");
    return s.WithMessage(s.message() + " (nothing was committed on the provider)");
  }
  LORRY_RETURN_IF_ERROR(provider.Exec("COMMIT").status());
  out << fmt::format("executed {} on the provider (message at {}); the subscriber runs it when its stream reaches "
                     "that point",
                     options.file, lsn)
      << "\n";
  for (const auto& t : add) out << fmt::format("added {}: copied by `lorry run` once the script ran on the subscriber", t.Display()) << "\n";
  return Status::Ok();
}

}  // namespace lorry::admin
