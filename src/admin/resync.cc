// `lorry resync TABLE... | --all`: copies replicated tables again.
//
// Each table goes back to `pending`, marked to be emptied on the subscriber
// before its copy; `lorry run` (the running one, or the next) then copies it
// at a snapshot of its own and hands it over to the stream like a table just
// added (sync/table_sync.h), while the other tables keep replicating. The
// stream skips a `pending` table, so nothing it applies to the table between
// the mark and the copy survives the emptying. With every table marked, a
// lost or missing slot is created afresh by the next run.
//
// Invariants: every name is checked before anything changes; a table being
// copied by a running `lorry run` is refused (its copy would overwrite the
// mark); all marks commit in one transaction.
#include <algorithm>
#include <ostream>
#include <set>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

// The replicated table `text` names: exact when qualified; an unqualified
// name must match exactly one replicated table.
std::optional<pg::QualifiedName> Match(const pg::QualifiedName& name, const std::vector<TableState>& states,
                                       std::vector<std::string>* problems, const std::string& subscription) {
  std::vector<pg::QualifiedName> matches;
  for (const auto& s : states)
    if (s.name.name == name.name && (name.schema.empty() || s.name.schema == name.schema)) matches.push_back(s.name);
  if (matches.size() == 1) return matches.front();
  if (matches.empty())
    problems->push_back(fmt::format("table {} is not replicated by subscription \"{}\": add it with `lorry add {}` "
                                    "(it is copied then)",
                                    name.Display(), subscription, ShellQuote(name.Display())));
  else
    problems->push_back(fmt::format("table name {} is ambiguous: say which, e.g. `lorry resync {}`", name.Display(),
                                    ShellQuote(matches.front().Display())));
  return std::nullopt;
}

}  // namespace

Status Resync(const Config& config, const ResyncOptions& options, std::ostream& out) {
  if (options.all == !options.tables.empty())
    return Status::Usage("name the tables to copy again (e.g. `lorry resync public.orders`), or use --all");
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(names.name);
  LORRY_ASSIGN_OR_RETURN(auto states, store.ListTables());
  LORRY_ASSIGN_OR_RETURN(bool running, RunIsActive(subscriber, names.name));

  std::vector<std::string> problems;
  std::vector<pg::QualifiedName> chosen;
  if (options.all) {
    if (states.empty())
      problems.push_back(fmt::format("subscription \"{}\" replicates no table yet: add some with `lorry add`",
                                     names.name));
    for (const auto& s : states) chosen.push_back(s.name);
  }
  for (const auto& text : options.tables) {
    auto name = pg::ParseQualifiedName(text);
    if (!name.ok()) {
      problems.push_back(name.status().message());
      continue;
    }
    auto m = Match(*name, states, &problems, names.name);
    if (m && std::find(chosen.begin(), chosen.end(), *m) == chosen.end()) chosen.push_back(*m);
  }
  for (const auto& s : states)
    if (running && s.state == TableStateKind::kCopying &&
        std::find(chosen.begin(), chosen.end(), s.name) != chosen.end())
      problems.push_back(fmt::format("table {} is being copied by the running `lorry run` right now: resync it once "
                                     "it is ready (`lorry wait`)",
                                     s.name.Display()));
  if (!problems.empty()) {
    std::string msg = fmt::format("cannot resync tables: {} problem{} found, nothing was changed", problems.size(),
                                  problems.size() == 1 ? "" : "s");
    for (const auto& p : problems) msg += "\n  - " + p;
    return Status::Precondition(msg);
  }

  LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
  Status s;
  for (const auto& n : chosen) {
    auto marked = store.MarkForResync(n, !running);
    if (!marked.ok()) {
      s = marked.status();
    } else if (!*marked) {
      s = Status::Precondition(fmt::format("table {} changed state meanwhile (a copy began): run `lorry resync` "
                                           "again once it is ready",
                                           n.Display()));
    }
    if (!s.ok()) break;
  }
  if (!s.ok()) {
    (void)subscriber.Exec("ROLLBACK");
    return s;
  }
  LORRY_RETURN_IF_ERROR(subscriber.Exec("COMMIT").status());
  for (const auto& n : chosen)
    out << fmt::format("{}: to be copied again (emptied on the subscriber first)", n.Display()) << "\n";
  if (running)
    out << "lorry run is active: it copies them in the background while the other tables keep replicating\n";
  else
    out << "start `lorry run` to copy them\n";
  return Status::Ok();
}

}  // namespace lorry::admin
