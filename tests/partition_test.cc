// Partitioned tables end to end: replicated through the root by default
// (publish_via_partition_root), copied leaf by leaf, applied through the
// subscriber's table of the root's name, whether it is partitioned the same
// way, otherwise, or not at all; `--partitions leaves` keeps each leaf a table
// of its own.
#include <gmock/gmock.h>
#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A payments table partitioned by month (January to April 2024) with a
// default partition, and a plain table next to it.
constexpr const char* kLayout = R"sql(
  CREATE TABLE customer (id int PRIMARY KEY, name text);
  CREATE TABLE payment (id bigint NOT NULL, paid_at date NOT NULL, customer_id int, amount numeric(10,2),
                        PRIMARY KEY (id, paid_at)) PARTITION BY RANGE (paid_at);
  CREATE TABLE payment_p2024_01 PARTITION OF payment FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
  CREATE TABLE payment_p2024_02 PARTITION OF payment FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
  CREATE TABLE payment_p2024_03 PARTITION OF payment FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
  CREATE TABLE payment_p2024_04 PARTITION OF payment FOR VALUES FROM ('2024-04-01') TO ('2024-05-01');
  CREATE TABLE payment_rest PARTITION OF payment DEFAULT;
)sql";
constexpr const char* kRows = R"sql(
  INSERT INTO customer SELECT g, 'c' || g FROM generate_series(1, 20) g;
  INSERT INTO payment SELECT g, date '2024-01-01' + (g % 150), g % 20 + 1, g * 1.25 FROM generate_series(1, 600) g;
  ANALYZE;
)sql";

#define REQUIRE_ROOT_MODE()                  \
  if (provider_cluster()->major_version() < 13) \
  GTEST_SKIP() << "publishing through the root needs PostgreSQL 13+ on the provider"

class Partitions : public TwoClusters {
 protected:
  std::unique_ptr<LorryProcess> StartRun() { return std::make_unique<LorryProcess>(Args({"run", "--jobs", "2"})); }

  std::vector<std::string> ReplicatedTables() const {
    std::string list = SubscriberValue("SELECT string_agg(relname, ',' ORDER BY relname) FROM lorry.tables");
    std::vector<std::string> out;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      out.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    return out;
  }

  // Rows into every month and the default partition, rows moved across
  // partitions by UPDATE (and out of the range into the default), deletes,
  // a plain-table change in the same transaction.
  void Workload() {
    ProviderSql("INSERT INTO payment SELECT 1000 + g, date '2024-01-01' + g * 7, 1, g FROM generate_series(0, 20) g");
    ProviderSql("UPDATE payment SET paid_at = paid_at + 31 WHERE id % 10 = 0");             // next month
    ProviderSql("UPDATE payment SET paid_at = date '2025-06-01' WHERE id % 25 = 1");        // into the default
    ProviderSql("UPDATE payment SET amount = amount + 1 WHERE id % 3 = 0");
    ProviderSql("DELETE FROM payment WHERE id % 13 = 0");
    ProviderSql("BEGIN; UPDATE customer SET name = 'moved' WHERE id = 3; "
                "UPDATE payment SET customer_id = 3, paid_at = date '2024-04-15' WHERE id = 2; COMMIT");
  }

  // The subscriber's rows equal the provider's, read through the root on
  // both sides, and so does each provider partition's share of them.
  void ExpectSameRows() {
    ExpectSameContent("payment");
    ExpectSameContent("customer");
    for (const char* leaf : {"payment_p2024_01", "payment_p2024_02", "payment_p2024_03", "payment_p2024_04",
                             "payment_rest"}) {
      std::string bounds = ProviderValue(fmt::format(
          "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = '{}'::regclass", leaf));
      std::string where = bounds == "DEFAULT" ? "paid_at < '2024-01-01' OR paid_at >= '2024-05-01'" : "";
      if (where.empty()) {
        auto from = bounds.find("('"), to = bounds.rfind("('");
        where = fmt::format("paid_at >= '{}' AND paid_at < '{}'", bounds.substr(from + 2, 10), bounds.substr(to + 2, 10));
      }
      std::string sql = fmt::format("SELECT md5(coalesce(string_agg(p::text, ',' ORDER BY id), '')) FROM payment p "
                                    "WHERE {}", where);
      EXPECT_EQ(SubscriberValue(sql), ProviderValue(sql)) << leaf;
      EXPECT_EQ(ProviderValue(sql), ProviderValue(fmt::format(
          "SELECT md5(coalesce(string_agg(p::text, ',' ORDER BY id), '')) FROM {} p", leaf))) << leaf;
    }
  }

  // The whole workflow against whatever payment table the subscriber has.
  void ReplicateThroughRoot() {
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry(Args({"add", "--all"}));
    ASSERT_EQ(add.exit_code, 0) << add.all();
    EXPECT_THAT(add.out, HasSubstr("added public.payment (all operations, about 600 rows, through its root: 5 partitions)"));
    EXPECT_THAT(add.out, Not(HasSubstr("payment_p2024")));
    EXPECT_EQ(ReplicatedTables(), (std::vector<std::string>{"customer", "payment"}));
    EXPECT_EQ(ProviderValue("SELECT pubviaroot FROM pg_publication WHERE pubname = 'lorry_main'"), "t");

    auto run = StartRun();
    Wait(run.get());
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM payment"), "600");
    ExpectSameRows();
    // Copied leaf by leaf, in parallel.
    EXPECT_THAT(run->Log(), HasSubstr("table=public.payment copy begins"));
    EXPECT_THAT(run->Log(), HasSubstr("ranges=5 split_by=partition"));

    Workload();
    Wait(run.get());
    ExpectSameRows();
    ExpectCompareClean({"payment", "customer"}, run.get());
    auto missing = RunLorry(Args({"missing"}));
    EXPECT_EQ(missing.exit_code, 0) << missing.all();

    ProviderSql("TRUNCATE payment");
    ProviderSql("INSERT INTO payment VALUES (1, '2024-02-02', 1, 9.99)");
    Wait(run.get());
    ExpectSameContent("payment");
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM payment"), "1");
    EXPECT_EQ(run->Terminate(), 0) << run->Log();
  }
};

TEST_F(Partitions, RootIntoSameLayout) {
  REQUIRE_ROOT_MODE();
  BothSql(kLayout);
  ProviderSql(kRows);
  ReplicateThroughRoot();
  for (const char* leaf : {"payment_p2024_01", "payment_p2024_03", "payment_rest"}) ExpectSameContent(leaf);
}

TEST_F(Partitions, RootIntoOtherwisePartitionedSubscriber) {
  REQUIRE_ROOT_MODE();
  ProviderSql(kLayout);
  ProviderSql(kRows);
  // By quarter, and by hash inside the first quarter.
  SubscriberSql(R"sql(
    CREATE TABLE customer (id int PRIMARY KEY, name text);
    CREATE TABLE payment (id bigint NOT NULL, paid_at date NOT NULL, customer_id int, amount numeric(10,2),
                          PRIMARY KEY (id, paid_at)) PARTITION BY RANGE (paid_at);
    CREATE TABLE payment_q1 PARTITION OF payment FOR VALUES FROM ('2024-01-01') TO ('2024-04-01')
      PARTITION BY HASH (id);
    CREATE TABLE payment_q1_h0 PARTITION OF payment_q1 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
    CREATE TABLE payment_q1_h1 PARTITION OF payment_q1 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
    CREATE TABLE payment_other PARTITION OF payment DEFAULT;
  )sql");
  ReplicateThroughRoot();
}

TEST_F(Partitions, RootIntoPlainSubscriberTable) {
  REQUIRE_ROOT_MODE();
  ProviderSql(kLayout);
  ProviderSql(kRows);
  SubscriberSql(R"sql(
    CREATE TABLE customer (id int PRIMARY KEY, name text);
    CREATE TABLE payment (id bigint NOT NULL, paid_at date NOT NULL, customer_id int, amount numeric(10,2),
                          PRIMARY KEY (id, paid_at));
  )sql");
  ReplicateThroughRoot();
}

TEST_F(Partitions, LeavesModeReplicatesEachLeafOnItsOwn) {
  ProviderSql(kLayout);
  ProviderSql(kRows);
  SubscriberSql(R"sql(
    CREATE TABLE customer (id int PRIMARY KEY, name text);
    CREATE TABLE payment_p2024_01 (id bigint, paid_at date, customer_id int, amount numeric(10,2), PRIMARY KEY (id, paid_at));
    CREATE TABLE payment_p2024_02 (LIKE payment_p2024_01 INCLUDING ALL);
    CREATE TABLE payment_p2024_03 (LIKE payment_p2024_01 INCLUDING ALL);
    CREATE TABLE payment_p2024_04 (LIKE payment_p2024_01 INCLUDING ALL);
    CREATE TABLE payment_rest (LIKE payment_p2024_01 INCLUDING ALL);
  )sql");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "--all", "--partitions", "leaves"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  EXPECT_EQ(ReplicatedTables(), (std::vector<std::string>{"customer", "payment_p2024_01", "payment_p2024_02",
                                                          "payment_p2024_03", "payment_p2024_04", "payment_rest"}));
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("INSERT INTO payment SELECT 1000 + g, date '2024-01-01' + g * 7, 1, g FROM generate_series(0, 20) g");
  ProviderSql("UPDATE payment SET amount = amount + 1 WHERE id % 3 = 0");
  ProviderSql("DELETE FROM payment WHERE id % 13 = 0");
  Wait(run.get());
  for (const char* leaf : {"payment_p2024_01", "payment_p2024_02", "payment_p2024_03", "payment_p2024_04",
                           "payment_rest"})
    ExpectSameContent(leaf);
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Partitions, PartitionNamedInRootModeIsRefusedWithTheFix) {
  REQUIRE_ROOT_MODE();
  ProviderSql(kLayout);
  ProviderSql(kRows);
  BothSql("SELECT 1");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "payment_p2024_02"}));
  EXPECT_EQ(add.exit_code, 2) << add.all();
  EXPECT_THAT(add.err, HasSubstr("table public.payment_p2024_02 is a partition of public.payment: partitions are "
                                 "replicated through their root. Add the root (`lorry add public.payment`), or add "
                                 "partitions one by one with `lorry add --partitions leaves public.payment_p2024_02`"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables"), "0");
}

}  // namespace
}  // namespace lorry::test
