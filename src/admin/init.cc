// `lorry init`: checks both servers, one printed line per check (with the fix
// when it fails), then installs what the subscription needs.
//
// Invariants: nothing is installed unless every check passes (warnings do not
// block); every install step first looks whether its object exists, so running
// init again is harmless and says what was already present.
#include <ostream>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "admin/ddl_capture.h"
#include "catalog/publications.h"
#include "catalog/server_identity.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

constexpr int kMinServerVersion = 120000;
// One slot and one walsender for the stream, one more for the copy of tables
// added while `run` streams.
constexpr int kNeededSlots = 2;

enum class Outcome { kOk, kWarn, kFail };

struct Check {
  Outcome outcome = Outcome::kOk;
  std::string side;  // "provider" or "subscriber"
  std::string text;
  std::string fix;  // what to do about a warning or failure

  std::string Line() const {
    const char* tag = outcome == Outcome::kOk ? "ok    " : outcome == Outcome::kWarn ? "warn  " : "FAIL  ";
    std::string line = fmt::format("{}{}: {}", tag, side, text);
    if (!fix.empty()) line += ". Fix: " + fix;
    return line;
  }
};

Check Pass(std::string side, std::string text) { return {Outcome::kOk, std::move(side), std::move(text), ""}; }
Check Fail(std::string side, std::string text, std::string fix) {
  return {Outcome::kFail, std::move(side), std::move(text), std::move(fix)};
}

// "15.4 (Debian 15.4-1)" -> "15.4"
std::string ShortVersion(std::string_view full) { return std::string(full.substr(0, full.find(' '))); }

Check VersionCheck(const std::string& side, const std::string& version, int64_t num) {
  if (num >= kMinServerVersion) return Pass(side, "server version " + version);
  return Fail(side,
              fmt::format("server version {} is not supported: lorry needs PostgreSQL 12 or later (the pgoutput "
                          "protocol and replication origin functions it relies on)",
                          version),
              "upgrade this server to PostgreSQL 12 or later");
}

// Whether the slot can survive a failover of the provider (README: Provider
// failover): said plainly at init, not discovered after one.
Check FailoverCheck(const std::string& side, int64_t num) {
  if (num >= 170000)
    return Pass(side, "PostgreSQL 17+: the slot is created as a failover slot; with a standby that syncs it "
                      "(sync_replication_slots), a failover needs no re-copy");
  return {Outcome::kWarn, side,
          fmt::format("PostgreSQL {} has no failover slots: after a failover of the provider (a standby promoted) "
                      "the slot is gone and `lorry resync --all` copies every table again",
                      num / 10000),
          "nothing now; PostgreSQL 17 or later on the provider keeps the slot across a failover"};
}

Result<std::vector<Check>> ProviderChecks(pg::PgConn& c, const SubscriptionNames& names) {
  const std::string side = "provider";
  LORRY_ASSIGN_OR_RETURN(
      auto r, c.ExecParams(
                  "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                  "current_setting('wal_level'), r.rolsuper, r.rolreplication, current_user, current_database(), "
                  "current_setting('max_replication_slots')::int, "
                  "(SELECT count(*) FROM pg_replication_slots WHERE slot_name <> $1), "
                  "current_setting('max_wal_senders')::int, "
                  "(SELECT count(*) FROM pg_stat_replication WHERE pid IS DISTINCT FROM "
                  "   (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1)), "
                  "has_database_privilege(current_database(), 'CREATE'), "
                  "(SELECT count(*) FROM pg_publication WHERE pubname IN ($2, $3)) "
                  "FROM pg_roles r WHERE r.rolname = current_user",
                  {names.slot, names.publication, names.insert_only_publication}));
  if (r.rows() != 1) return Status::Internal("provider: cannot read the current role from pg_roles");
  std::vector<Check> checks;
  std::string version = ShortVersion(r.Get(0, 0));
  checks.push_back(VersionCheck(side, version, r.GetInt(0, 1)));
  if (r.GetInt(0, 1) >= kMinServerVersion) checks.push_back(FailoverCheck(side, r.GetInt(0, 1)));

  std::string wal_level(r.Get(0, 2));
  if (wal_level == "logical")
    checks.push_back(Pass(side, "wal_level is logical"));
  else
    checks.push_back(Fail(side, fmt::format("wal_level is {}; logical decoding needs logical", wal_level),
                          "ALTER SYSTEM SET wal_level = logical; then restart the provider"));

  bool super = r.GetBool(0, 3), replication = r.GetBool(0, 4);
  std::string user = pg::QuoteIdentIfNeeded(r.Get(0, 5));
  std::string db = pg::QuoteIdentIfNeeded(r.Get(0, 6));
  if (super || replication)
    checks.push_back(Pass(side, fmt::format("user {} has {}", user, super ? "superuser" : "REPLICATION")));
  else
    checks.push_back(Fail(side,
                          fmt::format("user {} has no REPLICATION privilege, which reading the change stream needs",
                                      user),
                          fmt::format("as a superuser: ALTER ROLE {} REPLICATION;", user)));

  auto capacity = [&](const char* setting, int64_t max, int64_t used, const char* what) {
    int64_t free = max - used;
    if (free >= kNeededSlots)
      return Pass(side, fmt::format("{} = {}: {} free {} (lorry needs {})", setting, max, free, what, kNeededSlots));
    return Fail(side,
                fmt::format("{} = {} with {} used by others: {} free {}, lorry needs {} (one for the stream, one "
                            "to copy tables added later)",
                            setting, max, used, free < 0 ? 0 : free, what, kNeededSlots),
                fmt::format("ALTER SYSTEM SET {} = {}; then restart the provider", setting, used + kNeededSlots));
  };
  checks.push_back(capacity("max_replication_slots", r.GetInt(0, 7), r.GetInt(0, 8), "slots"));
  checks.push_back(capacity("max_wal_senders", r.GetInt(0, 9), r.GetInt(0, 10), "WAL senders"));

  bool may_create = r.GetBool(0, 11);
  int64_t publications = r.GetInt(0, 12);
  if (publications == 2)
    checks.push_back(Pass(side, fmt::format("publications {} and {} exist", names.publication,
                                          names.insert_only_publication)));
  else if (super || may_create)
    checks.push_back(Pass(side, fmt::format("user {} may create publications in database {}", user, db)));
  else
    checks.push_back(Fail(side, fmt::format("user {} may not create publications in database {}", user, db),
                          fmt::format("as a superuser: GRANT CREATE ON DATABASE {} TO {};", db, user)));
  return checks;
}

Result<std::vector<Check>> SubscriberChecks(pg::PgConn& c) {
  const std::string side = "subscriber";
  LORRY_ASSIGN_OR_RETURN(
      auto r, c.Exec("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                     "r.rolsuper, current_user, current_database(), "
                     "has_database_privilege(current_database(), 'CREATE'), "
                     "to_regclass('lorry.subscriptions') IS NOT NULL "
                     "FROM pg_roles r WHERE r.rolname = current_user"));
  if (r.rows() != 1) return Status::Internal("subscriber: cannot read the current role from pg_roles");
  std::vector<Check> checks;
  std::string version = ShortVersion(r.Get(0, 0));
  int64_t num = r.GetInt(0, 1);
  checks.push_back(VersionCheck(side, version, num));
  bool super = r.GetBool(0, 2);
  std::string user = pg::QuoteIdentIfNeeded(r.Get(0, 3));
  std::string db = pg::QuoteIdentIfNeeded(r.Get(0, 4));

  // Replication origins make progress crash-safe. Up to PostgreSQL 13 their
  // functions are for superusers only; from 14 on EXECUTE can be granted.
  // Those lorry calls: run (oid, create, session and transaction setup,
  // advance, progress), status/wait (progress) and drop (drop).
  static const char* kOriginFunctions[] = {
      "pg_replication_origin_oid",        "pg_replication_origin_create",  "pg_replication_origin_session_setup",
      "pg_replication_origin_xact_setup", "pg_replication_origin_advance", "pg_replication_origin_progress",
      "pg_replication_origin_drop"};
  if (super) {
    checks.push_back(Pass(side, fmt::format("user {} is a superuser: may use replication origins", user)));
  } else if (num < 140000) {
    checks.push_back(Fail(side,
                          fmt::format("user {} may not use replication origins: on PostgreSQL {} they need a superuser",
                                      user, version),
                          fmt::format("connect to the subscriber as a superuser, or: ALTER ROLE {} SUPERUSER;", user)));
  } else {
    std::vector<std::string> missing;
    for (const char* fn : kOriginFunctions) {
      LORRY_ASSIGN_OR_RETURN(
          auto ok, c.QueryValue("SELECT coalesce(bool_and(has_function_privilege(p.oid, 'EXECUTE')), false) "
                                "FROM pg_proc p WHERE p.proname = $1 AND p.pronamespace = 'pg_catalog'::regnamespace",
                                {fn}));
      if (!ok || *ok != "t") missing.push_back(fn);
    }
    if (missing.empty()) {
      checks.push_back(Pass(side, fmt::format("user {} may use replication origins", user)));
    } else {
      std::string grants;
      for (const auto& fn : missing) {
        LORRY_ASSIGN_OR_RETURN(
            auto sigs, c.ExecParams("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = $1 "
                                    "AND p.pronamespace = 'pg_catalog'::regnamespace",
                                    {fn}));
        for (int i = 0; i < sigs.rows(); ++i)
          grants += fmt::format("GRANT EXECUTE ON FUNCTION {} TO {}; ", sigs.Get(i, 0), user);
      }
      grants.pop_back();
      std::string list;
      for (const auto& fn : missing) list += (list.empty() ? "" : ", ") + fn + "()";
      checks.push_back(Fail(side, fmt::format("user {} may not use replication origins (no EXECUTE on {})", user, list),
                            "as a superuser: " + grants));
    }
  }

  bool installed = r.GetBool(0, 6);
  if (installed)
    checks.push_back(Pass(side, "schema lorry exists"));
  else if (super || r.GetBool(0, 5))
    checks.push_back(Pass(side, fmt::format("user {} may create the lorry schema in database {}", user, db)));
  else
    checks.push_back(Fail(side, fmt::format("user {} may not create schemas in database {}", user, db),
                          fmt::format("as a superuser: GRANT CREATE ON DATABASE {} TO {};", db, user)));

  // Without session_replication_role = replica, triggers and foreign keys of
  // the subscriber's tables fire for replicated rows: allowed, but worth knowing.
  bool may_set_role = super;
  if (!super && num >= 150000) {
    LORRY_ASSIGN_OR_RETURN(auto v,
                           c.QueryValue("SELECT has_parameter_privilege('session_replication_role', 'SET')"));
    may_set_role = v && *v == "t";
  }
  if (may_set_role) {
    checks.push_back(Pass(side, fmt::format("user {} may SET session_replication_role", user)));
  } else {
    Check w{Outcome::kWarn, side,
            fmt::format("user {} may not SET session_replication_role: triggers and foreign keys of replicated "
                        "tables will fire for replicated changes",
                        user),
            num >= 150000 ? fmt::format("as a superuser: GRANT SET ON PARAMETER session_replication_role TO {};", user)
                          : "connect to the subscriber as a superuser (or accept that triggers fire)"};
    checks.push_back(std::move(w));
  }
  return checks;
}

// One database cannot be both sides; two databases of one server may.
Result<Check> DistinctDatabasesCheck(pg::PgConn& provider, pg::PgConn& subscriber) {
  LORRY_ASSIGN_OR_RETURN(auto p, catalog::IdentifyServer(provider));
  LORRY_ASSIGN_OR_RETURN(auto s, catalog::IdentifyServer(subscriber));
  const std::string side = "both";
  if (Status same = catalog::RequireDistinctDatabases(p, s); !same.ok())
    return Fail(side, same.message(), "name another database as the subscriber");
  if (p.SameServer(s))
    return Check{Outcome::kWarn, side,
                 fmt::format("provider and subscriber are databases {} and {} of the same server (system identifier "
                             "{}): allowed, but the copy and the stream load that one server twice and its WAL "
                             "holds every replicated change twice",
                             pg::QuoteIdentIfNeeded(p.database), pg::QuoteIdentIfNeeded(s.database),
                             p.system_identifier),
                 "none needed if this is meant (a copy within one server); otherwise point the subscriber at the "
                 "target server"};
  return Pass(side, fmt::format("provider and subscriber are different servers (system identifiers {} and {})",
                                p.system_identifier, s.system_identifier));
}

// `--capture-ddl`: event triggers need a superuser, lorry messages PostgreSQL 14.
Result<Check> CaptureDdlCheck(pg::PgConn& c) {
  const std::string side = "provider";
  LORRY_ASSIGN_OR_RETURN(auto r, c.Exec("SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user"));
  if (r.rows() != 1) return Status::Internal("provider: cannot read the current role from pg_roles");
  if (c.server_version() < 140000)
    return Fail(side,
                fmt::format("--capture-ddl needs PostgreSQL 14 or later on the provider (the change stream carries "
                            "lorry's messages from 14 on); the provider runs {}.{}",
                            c.server_version() / 10000, c.server_version() % 10000),
                "leave out --capture-ddl and send DDL with `lorry execute` (also 14+), or run it on both sides "
                "yourself");
  std::string user = pg::QuoteIdentIfNeeded(r.Get(0, 1));
  if (!r.GetBool(0, 0))
    return Fail(side,
                fmt::format("--capture-ddl installs an event trigger, which only a superuser may create; user {} is "
                            "not one",
                            user),
                "run `lorry init --capture-ddl` once with a superuser's provider connection (--provider "
                "\"... user=postgres\"), or leave out --capture-ddl and use `lorry execute`");
  return Pass(side, fmt::format("user {} is a superuser: may install the DDL capture event trigger", user));
}

void Report(std::ostream& out, bool created, const std::string& side, const std::string& what) {
  out << fmt::format("{}{}: {}", created ? "created  " : "present  ", side, what) << "\n";
}

Status Install(pg::PgConn& provider, pg::PgConn& subscriber, const SubscriptionNames& names, std::ostream& out) {
  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  LORRY_RETURN_IF_ERROR(store.Install().WithContext("installing the lorry schema on the subscriber"));
  Report(out, !installed, "subscriber", fmt::format("schema lorry with subscription \"{}\"", names.name));

  LORRY_ASSIGN_OR_RETURN(auto origin, subscriber.QueryValue("SELECT pg_replication_origin_oid($1)", {names.origin}));
  if (!origin) {
    LORRY_RETURN_IF_ERROR(subscriber.ExecParams("SELECT pg_replication_origin_create($1)", {names.origin}).status());
  }
  Report(out, !origin, "subscriber", "replication origin " + names.origin);

  struct Pub {
    const std::string& name;
    const char* publish;
  };
  for (const Pub& p : {Pub{names.publication, "insert, update, delete, truncate"},
                       Pub{names.insert_only_publication, "insert, truncate"}}) {
    LORRY_ASSIGN_OR_RETURN(bool exists, PublicationExists(provider, p.name));
    if (!exists) {
      LORRY_RETURN_IF_ERROR(provider
                                .Exec(fmt::format("CREATE PUBLICATION {} WITH ({})", pg::QuoteIdent(p.name),
                                                  catalog::PublicationOptions(p.publish, provider.server_version())))
                                .status());
    }
    Report(out, !exists, "provider", fmt::format("publication {} ({})", p.name, p.publish));
  }
  return Status::Ok();
}

}  // namespace

Status Init(const Config& config, const InitOptions& options, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  auto provider = ConnectProvider(config);
  auto subscriber = ConnectSubscriber(config);
  // Both sides are tried so that one run names every unreachable server.
  if (!provider.ok() && !subscriber.ok())
    return provider.status().WithMessage(provider.status().message() + "\n" + subscriber.status().message());
  if (!provider.ok()) return provider.status();
  if (!subscriber.ok()) return subscriber.status();

  std::vector<Check> checks;
  LORRY_ASSIGN_OR_RETURN(auto pc, ProviderChecks(*provider, names));
  LORRY_ASSIGN_OR_RETURN(auto sc, SubscriberChecks(*subscriber));
  checks.insert(checks.end(), pc.begin(), pc.end());
  if (options.capture_ddl) {
    LORRY_ASSIGN_OR_RETURN(auto capture, CaptureDdlCheck(*provider));
    checks.push_back(std::move(capture));
  }
  checks.insert(checks.end(), sc.begin(), sc.end());
  LORRY_ASSIGN_OR_RETURN(auto distinct, DistinctDatabasesCheck(*provider, *subscriber));
  checks.push_back(std::move(distinct));
  std::string failures;
  int failed = 0;
  for (const auto& c : checks) {
    out << c.Line() << "\n";
    if (c.outcome == Outcome::kFail) {
      ++failed;
      failures += "\n  " + c.Line();
    }
  }
  out.flush();
  if (failed > 0)
    return Status::Precondition(
        fmt::format("{} check{} failed; nothing was installed:{}", failed, failed == 1 ? "" : "s", failures));

  LORRY_RETURN_IF_ERROR(Install(*provider, *subscriber, names, out));
  if (options.capture_ddl) LORRY_RETURN_IF_ERROR(InstallDdlCapture(*provider, names, out));
  out << fmt::format("subscription \"{}\" is initialised: add tables with `lorry add TABLE...` or `lorry add --all`, "
                     "then start `lorry run`",
                     names.name)
      << "\n";
  return Status::Ok();
}

}  // namespace lorry::admin
