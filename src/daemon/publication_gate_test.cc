#include "daemon/publication_gate.h"

#include <gtest/gtest.h>

namespace lorry::daemon {
namespace {

TableState Table(const std::string& name, std::optional<Lsn> sync_lsn) {
  TableState t;
  t.name = {"public", name};
  t.sync_lsn = sync_lsn;
  return t;
}

TEST(PublicationGate, InitsPublicationsAreUsableEverywhere) {
  auto names = SubscriptionNames::For("main");
  EXPECT_EQ(UsableFrom(names, {"lorry_main", {}}, {}, {}), Lsn());
  EXPECT_EQ(UsableFrom(names, {"lorry_main_insert_only", {}}, {}, {}), Lsn());
}

TEST(PublicationGate, ANewPublicationIsUsableFromItsEarliestTableCopyOrItsHorizon) {
  auto names = SubscriptionNames::For("main");
  catalog::PublicationTables pub{"lorry_main_ops_i", {{"public", "a"}, {"public", "b"}}};
  // Nothing known: no table copied from it yet, no horizon learned.
  EXPECT_EQ(UsableFrom(names, pub, {Table("a", std::nullopt), Table("c", Lsn(10))}, {}), std::nullopt);
  // A table of it copied at a slot's snapshot: usable from there (the earliest).
  EXPECT_EQ(UsableFrom(names, pub, {Table("a", Lsn(500)), Table("b", Lsn(300)), Table("c", Lsn(10))}, {}), Lsn(300));
  // A horizon learned while running, earlier than the copies.
  EXPECT_EQ(UsableFrom(names, pub, {Table("b", Lsn(300))}, {{"lorry_main_ops_i", Lsn(200)}}), Lsn(200));
  EXPECT_EQ(UsableFrom(names, pub, {}, {{"lorry_main_ops_iu", Lsn(200)}}), std::nullopt);
}

}  // namespace
}  // namespace lorry::daemon
