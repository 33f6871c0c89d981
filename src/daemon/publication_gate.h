// Which of the subscription's publications a stream may ask for, and from
// which position on.
//
// pgoutput looks up the publications it was asked for in the catalog as it
// was when the transaction it decodes made its first change (a historic
// snapshot). Asked for a publication created later than that, it fails with
// `publication "..." does not exist` (PostgreSQL up to 17), and it would fail
// again on every restart from the same position. `lorry add --ops` creates
// publications while lorry runs or while it is stopped, so a stream may only
// ask for a publication from a position where it is "usable": every
// transaction committed at or after that position began changing data after
// the publication existed.
//
// A usable position of publication P is known from
//   - `init`: its two publications exist before the slot is created;
//   - a table of P with a sync LSN: its copy's snapshot came from a slot
//     created after the table was in P, and the slot's consistent point (or
//     any later hand-over position) is usable;
//   - P's horizon: once every transaction that had an xid when P was first
//     seen has ended, the provider's WAL position at that moment is usable
//     (learned while running, kept for the life of the process).
// A stream starting at S asks for the publications usable at or before S.
// It runs without the others until the lowest usable position of theirs,
// the gate, then ends exactly there (between transactions, having applied
// nothing at or after it) so that the next stream starts at that position
// with them (daemon.cc). Tables of a publication the stream does not carry
// wait `pending` (no background copy can be handed over to it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "catalog/publications.h"
#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"
#include "state/names.h"
#include "state/state_store.h"

namespace lorry::daemon {

// Where publication `pub` (holding `tables`) is known to be usable from, or
// nothing if it is not known yet. `learned`: positions found from horizons.
std::optional<Lsn> UsableFrom(const SubscriptionNames& names, const catalog::PublicationTables& pub,
                              const std::vector<TableState>& tables, const std::map<std::string, Lsn>& learned);

class PublicationGate {
 public:
  explicit PublicationGate(SubscriptionNames names) : names_(std::move(names)) {}

  // The publications a stream starting at `start` asks for; the others wait
  // for the gate.
  Result<std::vector<std::string>> Begin(pg::PgConn& provider, const std::vector<TableState>& tables, Lsn start);

  // While streaming, about once a second: learns where the publications the
  // stream lacks (including ones created since it began) become usable.
  Status Poll(pg::PgConn& provider, const std::vector<TableState>& tables);

  // The lowest usable position of a publication the stream lacks.
  std::optional<Lsn> gate() const { return gate_; }
  // Publications the stream lacks (none usable yet, or not yet at the gate).
  const std::set<std::string>& waiting() const { return waiting_; }
  // Whether the stream's publications hold this table.
  bool Carries(const pg::QualifiedName& table) const { return carried_.count(table) > 0; }

 private:
  // Waiting publications, their gate, and the tables the stream carries,
  // from the provider's current `publications`.
  Status Refresh(pg::PgConn& provider, const std::vector<catalog::PublicationTables>& publications,
                 const std::vector<TableState>& tables);
  // A position usable for `pub` from its horizon, once it is known.
  Result<std::optional<Lsn>> Horizon(pg::PgConn& provider, const std::string& pub);

  const SubscriptionNames names_;
  std::map<std::string, Lsn> learned_;        // from horizons: kept across streams
  std::map<std::string, int64_t> horizons_;   // publication -> xmax of the snapshot when first seen
  std::set<std::string> streaming_;           // what the current stream asked for
  std::set<std::string> waiting_;
  std::set<pg::QualifiedName> carried_;
  std::optional<Lsn> gate_;
};

}  // namespace lorry::daemon
