// `lorry skip --lsn LSN`: asks `lorry run` to skip one provider transaction,
// on purpose, e.g. one whose change cannot be applied (a constraint the
// subscriber has and the provider has not).
//
// LSN is the transaction's commit LSN, as apply errors show it ("lsn=...").
// The request is a row of lorry.skips; `run` skips every change of that
// transaction and records when, with the tables and counts of the changes
// not applied. An LSN the subscriber has already applied is refused: there
// is nothing left to skip, and recording it would only mislead.
#include <unistd.h>

#include <cstdlib>
#include <ostream>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

std::string Requester() {
  const char* user = std::getenv("USER");
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return fmt::format("{}@{}", user && *user ? user : std::to_string(getuid()), host);
}

}  // namespace

Status Skip(const Config& config, const std::string& lsn_text, std::ostream& out) {
  auto lsn = Lsn::Parse(lsn_text);
  if (!lsn || !lsn->valid())
    return Status::Usage(fmt::format("--lsn: expected a WAL position such as 0/1A2B3C4 (the lsn=... of the "
                                     "apply error), got \"{}\"",
                                     lsn_text));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  StateStore store(&subscriber, config.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(config.name);
  LORRY_RETURN_IF_ERROR(store.Install());  // lorry.skips comes with schema version 3
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto sub, store.LoadSubscription());
  // Asked before (and perhaps skipped since): say so, whatever was applied after.
  LORRY_ASSIGN_OR_RETURN(auto earlier,
                         subscriber.ExecParams("SELECT requested_at::text || ' by ' || requested_by, skipped_at::text "
                                               "FROM lorry.skips WHERE subscription = $1 AND commit_lsn = $2",
                                               {config.name, lsn->ToString()}));
  if (earlier.rows() > 0) {
    if (earlier.IsNull(0, 1))
      out << fmt::format("already requested ({}): `lorry run` skips the provider transaction committed at {}\n",
                         earlier.Get(0, 0), lsn->ToString());
    else
      out << fmt::format("already skipped at {} (requested {}): the provider transaction committed at {}\n",
                         earlier.Get(0, 1), earlier.Get(0, 0), lsn->ToString());
    return Status::Ok();
  }
  std::optional<Lsn> applied = OriginProgress(subscriber, names.origin, true);
  if (!applied) applied = sub.last_commit_lsn;
  // The origin holds the end of the last transaction applied; a commit
  // before it is in the past.
  if (applied && *lsn < *applied)
    return Status::Precondition(fmt::format(
        "the provider transaction committed at {} is already applied (subscription \"{}\" has applied up to {}): "
        "nothing to skip. Use the lsn=... of the current apply error (`lorry status`)",
        lsn->ToString(), config.name, applied->ToString()));
  LORRY_ASSIGN_OR_RETURN(
      auto r, subscriber.ExecParams("INSERT INTO lorry.skips (subscription, commit_lsn, requested_by) "
                                    "VALUES ($1, $2, $3 || ' (database user ' || current_user || ')') "
                                    "ON CONFLICT (subscription, commit_lsn) DO NOTHING RETURNING 1",
                                    {config.name, lsn->ToString(), Requester()}));
  if (r.rows() == 0) {
    out << fmt::format("already requested: `lorry run` skips the provider transaction committed at {}\n",
                       lsn->ToString());
    return Status::Ok();
  }
  out << fmt::format(
      "recorded: `lorry run` skips the provider transaction committed at {} (all its changes) when it comes, and "
      "records it in lorry.skips; the subscriber has applied up to {}\n",
      lsn->ToString(), applied ? applied->ToString() : "nothing yet");
  return Status::Ok();
}

}  // namespace lorry::admin
