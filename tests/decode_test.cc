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

}  // namespace
}  // namespace lorry::test
