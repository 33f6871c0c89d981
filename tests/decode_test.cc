// `lorry decode`: the receive and decode stages alone, as the benchmarks use them.
#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

class Decode : public TwoClusters {};

TEST_F(Decode, CountsTransactionsAndChangesUpToTheInsertPosition) {
  ProviderSql("CREATE TABLE d (id int PRIMARY KEY, v text); CREATE PUBLICATION bench_pub FOR TABLE d");
  ProviderSql("SELECT pg_create_logical_replication_slot('bench_slot', 'pgoutput')");
  for (int i = 0; i < 10; ++i)
    ProviderSql(fmt::format("INSERT INTO d SELECT g, 'x' FROM generate_series({}, {}) g", i * 10 + 1, i * 10 + 10));
  ProviderSql("UPDATE d SET v = 'y' WHERE id <= 5");
  auto r = RunLorry({"decode", "--provider", Provider(), "--slot", "bench_slot", "--publications", "bench_pub",
                     "--idle-timeout", "20"},
                    60);
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("decoded 11 transactions, 105 changes"), std::string::npos) << r.all();
  // The slot was advanced: nothing is decoded twice.
  ProviderSql("SELECT pg_drop_replication_slot('bench_slot')");
}

// Decoding confirms what it reads: on a subscription's slot it would lose
// changes, so lorry's slots are refused and the slot is left where it was.
TEST_F(Decode, RefusesLorrysOwnSlotsAndIsNotInTheMainHelp) {
  ProviderSql("CREATE TABLE d (id int PRIMARY KEY); CREATE PUBLICATION lorry_main FOR TABLE d");
  ProviderSql("SELECT pg_create_logical_replication_slot('lorry_main', 'pgoutput')");
  std::string before = ProviderValue("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'lorry_main'");
  ProviderSql("INSERT INTO d SELECT generate_series(1, 10)");
  auto r = RunLorry({"decode", "--provider", Provider(), "--slot", "lorry_main", "--publications", "lorry_main",
                     "--idle-timeout", "5"},
                    60);
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_NE(r.err.find("refusing to decode slot lorry_main"), std::string::npos) << r.all();
  EXPECT_EQ(ProviderValue("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'lorry_main'"),
            before);
  ProviderSql("SELECT pg_drop_replication_slot('lorry_main')");
  auto help = RunLorry({"--help"});
  EXPECT_EQ(help.out.find("decode"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace lorry::test
