// The workflow of a new user on a typical application schema, into an EMPTY
// subscriber: a payments table partitioned by month (12 partitions),
// sequences created standalone and used through nextval() defaults (one
// descending, one cycling, one free-standing), a STORED generated column, a
// trigger maintaining last_update, an identity column, an enum, a domain,
// arrays, tsvector, a view and a materialized view.
//
// `init --capture-ddl`, `add --all --create`, `run`, `wait`, then a workload
// that writes into every partition, moves rows across partitions, deletes,
// creates a partition and fills it, TRUNCATEs a table; every table, every
// partition and every sequence ends identical on both sides; `missing`
// lists nothing; `compare` is clean. Then the same into a subscriber whose
// payment table is not partitioned, and a partition created without DDL
// capture, which `wait`, `status` and `tables` name with its fix.
#include <cstdio>
#include <cstdlib>

#include <gmock/gmock.h>
#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kDdl = R"sql(
  CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
  CREATE DOMAIN year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);
  CREATE SEQUENCE customer_customer_id_seq;
  CREATE SEQUENCE film_film_id_seq START 100 INCREMENT 10;
  CREATE SEQUENCE payment_payment_id_seq;
  CREATE SEQUENCE ticket_down_seq INCREMENT -1 MINVALUE -1000000 MAXVALUE 0 START 0;
  CREATE SEQUENCE slot_seq MINVALUE 1 MAXVALUE 5 CYCLE;
  CREATE SEQUENCE invoice_no_seq START 5000;  -- used by the application only
  CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.last_update = clock_timestamp(); RETURN NEW; END $$;
  CREATE TABLE customer (
    customer_id int PRIMARY KEY DEFAULT nextval('customer_customer_id_seq'),
    first_name text NOT NULL, last_name text NOT NULL, email text, active boolean DEFAULT true,
    last_update timestamptz NOT NULL DEFAULT now(),
    full_name text GENERATED ALWAYS AS (first_name || ' ' || last_name) STORED);
  CREATE TRIGGER last_updated BEFORE UPDATE ON customer FOR EACH ROW EXECUTE FUNCTION last_updated();
  CREATE TABLE film (
    film_id int PRIMARY KEY DEFAULT nextval('film_film_id_seq'), title text NOT NULL, release_year year,
    rating mpaa_rating DEFAULT 'G', special_features text[], fulltext tsvector,
    ticket int DEFAULT nextval('ticket_down_seq'), slot int DEFAULT nextval('slot_seq'));
  CREATE TABLE rental (rental_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id int NOT NULL,
                       film_id int NOT NULL, rented_at timestamptz NOT NULL DEFAULT now(), note text);
  CREATE TABLE payment (
    payment_id int NOT NULL DEFAULT nextval('payment_payment_id_seq'), customer_id int NOT NULL,
    amount numeric(6,2) NOT NULL, payment_date timestamptz NOT NULL,
    PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);
  DO $$ BEGIN
    FOR m IN 1..12 LOOP
      EXECUTE format('CREATE TABLE payment_p2022_%s PARTITION OF payment FOR VALUES FROM (%L) TO (%L)',
                     lpad(m::text, 2, '0'), make_date(2022, m, 1), make_date(2022, m, 1) + interval '1 month');
    END LOOP;
  END $$;
  CREATE VIEW customer_list AS SELECT customer_id, full_name FROM customer WHERE active;
  CREATE MATERIALIZED VIEW sales_by_customer AS SELECT customer_id, sum(amount) AS total FROM payment GROUP BY 1;
)sql";

constexpr const char* kData = R"sql(
  INSERT INTO customer (first_name, last_name, email)
    SELECT 'first' || g, 'last' || g, 'c' || g || '@example.com' FROM generate_series(1, 50) g;
  INSERT INTO film (title, release_year, rating, special_features, fulltext)
    SELECT 'film ' || g, 1990 + g % 30, (ARRAY['G','PG','R'])[1 + g % 3]::mpaa_rating,
           ARRAY['Trailers', 'Deleted Scenes'], to_tsvector('a film about number ' || g)
    FROM generate_series(1, 20) g;
  INSERT INTO rental (customer_id, film_id) SELECT 1 + g % 50, 100 + 10 * (g % 20) FROM generate_series(1, 100) g;
  INSERT INTO payment (customer_id, amount, payment_date)
    SELECT 1 + g % 50, (g % 100) + 0.99, timestamptz '2022-01-01 00:00+00' + (g % 365) * interval '1 day'
    FROM generate_series(1, 1200) g;
  SELECT nextval('invoice_no_seq') FROM generate_series(1, 3);
  REFRESH MATERIALIZED VIEW sales_by_customer;
  ANALYZE;
)sql";

// Rows into every month (and the new partition), rows moved across months,
// deletes, trigger-maintained and generated columns, the identity table,
// the sequences moved, a TRUNCATE.
constexpr const char* kWorkload = R"sql(
  INSERT INTO payment (customer_id, amount, payment_date)
    SELECT 1 + g % 50, 5.55, make_date(2022, 1 + g % 12, 15) FROM generate_series(1, 60) g;
  UPDATE payment SET payment_date = payment_date + interval '1 month'
    WHERE payment_id % 17 = 0 AND payment_date < '2022-12-01';
  DELETE FROM payment WHERE payment_id % 23 = 0;
  UPDATE customer SET last_name = 'changed', email = NULL WHERE customer_id % 5 = 0;
  DELETE FROM customer WHERE customer_id = 50;
  INSERT INTO customer (first_name, last_name) VALUES ('new', 'customer');
  INSERT INTO film (title) SELECT 'late film ' || g FROM generate_series(1, 7) g;
  UPDATE film SET special_features = special_features || 'Commentaries'::text, rating = 'NC-17' WHERE film_id < 150;
  INSERT INTO rental (customer_id, film_id) SELECT g, 100 FROM generate_series(1, 10) g;
  UPDATE rental SET note = 'returned' WHERE rental_id % 3 = 0;
  DELETE FROM rental WHERE rental_id % 7 = 0;
  SELECT nextval('invoice_no_seq'), nextval('slot_seq') FROM generate_series(1, 4);
)sql";

// Captured DDL is replayed as the query string it came in: the partition is
// created by a statement of its own.
constexpr const char* kCreatePartition =
    "CREATE TABLE payment_p2023_01 PARTITION OF payment FOR VALUES FROM ('2023-01-01 00:00+00') TO "
    "('2023-02-01 00:00+00')";
constexpr const char* kFillPartition = R"sql(
  INSERT INTO payment (customer_id, amount, payment_date)
    SELECT 1 + g % 50, 7.77, timestamptz '2023-01-01 00:00+00' + g * interval '1 hour' FROM generate_series(1, 100) g;
  UPDATE payment SET payment_date = '2023-01-20 00:00+00' WHERE payment_id % 31 = 0 AND payment_date < '2022-06-01';
)sql";

class RealisticSchema : public TwoClusters {
 protected:
  int Major() const { return provider_cluster()->major_version(); }
  // Whether the pg_dump that --create runs can dump the provider (the
  // extra majors of scripts/install-pg-major come without client programs).
  bool PgDumpCanDumpProvider() const {
    FILE* f = popen("pg_dump --version", "r");
    if (f == nullptr) return false;
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    pclose(f);
    std::string v(buf, n);
    auto pos = v.find("(PostgreSQL) ");
    return pos != std::string::npos && std::atoi(v.c_str() + pos + 13) >= Major();
  }
  void Schema() {
    ProviderSql(kDdl);
    ProviderSql(kData);
  }
  std::unique_ptr<LorryProcess> StartRun() { return std::make_unique<LorryProcess>(Args({"run", "--jobs", "2"})); }

  // md5 of a relation's rows (ONLY: a partitioned table's own rows are its
  // partitions'), in key order.
  std::string Md5(bool provider, const std::string& table) const {
    std::string sql = fmt::format(
        "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '')) FROM {} t", table);
    return provider ? ProviderValue(sql) : SubscriberValue(sql);
  }

  // Every table and partition of the provider, and every sequence, equal
  // on the subscriber. `partitions`: whether the subscriber has them too.
  void ExpectAllIdentical(bool partitions, int provider_partitions = 13, bool root = true) {
    std::string list = ProviderValue(
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')");
    int partitions_seen = 0;
    for (size_t start = 0; start < list.size();) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      std::string t = list.substr(start, comma - start);
      start = comma + 1;
      bool is_partition = t.rfind("payment_p", 0) == 0;
      partitions_seen += is_partition;
      if ((is_partition && !partitions) || (t == "payment" && !root)) continue;
      EXPECT_EQ(Md5(false, t), Md5(true, t)) << "rows differ: " << t;
    }
    EXPECT_EQ(partitions_seen, provider_partitions);
    std::string seqs = ProviderValue("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                                     "WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace");
    EXPECT_EQ(seqs, "customer_customer_id_seq,film_film_id_seq,invoice_no_seq,payment_payment_id_seq,"
                    "rental_rental_id_seq,slot_seq,ticket_down_seq");
    for (size_t start = 0; start < seqs.size();) {
      size_t comma = seqs.find(',', start);
      if (comma == std::string::npos) comma = seqs.size();
      std::string s = seqs.substr(start, comma - start);
      start = comma + 1;
      std::string sql = fmt::format("SELECT last_value || '/' || is_called FROM {}", s);
      EXPECT_EQ(SubscriberValue(sql), ProviderValue(sql)) << "sequence " << s;
    }
  }

  void ExpectNothingMissingAndCompareClean(const LorryProcess* run) {
    auto missing = RunLorry(Args({"missing"}));
    EXPECT_EQ(missing.exit_code, 0) << missing.all();
    EXPECT_THAT(missing.out, HasSubstr("nothing missing"));
    ExpectCompareClean({"customer", "film", "payment", "rental"}, run);
  }

  // init --capture-ddl, add --all --create, run, wait, the workload, the new
  // partition, TRUNCATE; identical at every step.
  // `create`: the subscriber is empty (add --all --create); otherwise it
  // has the provider's DDL already (for a provider newer than pg_dump).
  void Workflow(bool subscriber_partitioned, bool create) {
    Schema();
    if (!create) SubscriberSql(kDdl);
    auto init = RunLorry(Args({"init", "--capture-ddl"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry(Args(create ? std::vector<std::string>{"add", "--all", "--create"}
                                    : std::vector<std::string>{"add", "--all"}));
    ASSERT_EQ(add.exit_code, 0) << add.all();
    EXPECT_THAT(add.out, HasSubstr("added public.payment (all operations, about 1200 rows, through its root: 12 "
                                   "partitions)"));
    EXPECT_THAT(add.out, HasSubstr("added sequence public.invoice_no_seq"));
    EXPECT_THAT(add.out, Not(HasSubstr("added public.payment_p2022")));
    if (create) ExpectCreated(subscriber_partitioned, add.out);
    Stream(subscriber_partitioned);
  }

  void ExpectCreated(bool subscriber_partitioned, const std::string& out) {
    const auto& add = out;
    if (subscriber_partitioned)
      EXPECT_THAT(add, HasSubstr("created table public.payment with its 12 partitions"));
    else
      EXPECT_THAT(add, Not(HasSubstr("created table public.payment")));
    EXPECT_THAT(add, HasSubstr("created type public.mpaa_rating"));
    EXPECT_THAT(add, HasSubstr("created type public.year"));
    EXPECT_THAT(add, HasSubstr("created sequence public.customer_customer_id_seq"));
    EXPECT_THAT(add, HasSubstr("created sequence public.slot_seq"));
    EXPECT_THAT(add, HasSubstr("created sequence public.invoice_no_seq"));
    EXPECT_THAT(add, HasSubstr("left out (--create makes only what replication needs; `pg_dump --schema-only` "
                                   "copies a whole schema): view public.customer_list, materialized view "
                                   "public.sales_by_customer, function public.last_updated(), trigger last_updated "
                                   "on public.customer"));
    // Partitions created as partitions, identity as identity, the generated
    // column generated, no trigger.
    if (subscriber_partitioned)
      EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_inherits WHERE inhparent = 'payment'::regclass"), "12");
    EXPECT_EQ(SubscriberValue("SELECT attidentity FROM pg_attribute WHERE attrelid = 'rental'::regclass "
                              "AND attname = 'rental_id'"),
              "a");
    EXPECT_EQ(SubscriberValue("SELECT attgenerated FROM pg_attribute WHERE attrelid = 'customer'::regclass "
                              "AND attname = 'full_name'"),
              "s");
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"), "0");
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_class WHERE relkind IN ('v', 'm') "
                              "AND relnamespace = 'public'::regnamespace"),
              "0");
  }

  void Stream(bool subscriber_partitioned) {
    auto run = StartRun();
    Wait(run.get());
    ExpectAllIdentical(subscriber_partitioned, 12);

    ProviderSql(kWorkload);
    ProviderSql(kCreatePartition);
    ProviderSql(kFillPartition);
    Wait(run.get());
    if (subscriber_partitioned)
      EXPECT_EQ(SubscriberValue("SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                                "WHERE oid = 'payment_p2023_01'::regclass"),
                ProviderValue("SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                              "WHERE oid = 'payment_p2023_01'::regclass"));
    else
      EXPECT_THAT(run->Log(), HasSubstr("ddl skipped reason=\"the subscriber's table is not partitioned\""));
    ExpectAllIdentical(subscriber_partitioned);
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM payment WHERE payment_date >= '2023-01-01'"),
              ProviderValue("SELECT count(*) FROM payment_p2023_01"));
    ExpectNothingMissingAndCompareClean(run.get());

    ProviderSql("TRUNCATE rental");
    ProviderSql("INSERT INTO rental (customer_id, film_id) VALUES (1, 100)");
    Wait(run.get());
    ExpectAllIdentical(subscriber_partitioned);
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM rental"), "1");
    EXPECT_EQ(run->Terminate(), 0) << run->Log();
  }
};

#define REQUIRE_CAPTURE_AND_PG_DUMP()                                                                    \
  if (Major() < 14) GTEST_SKIP() << "DDL capture needs PostgreSQL 14+ on the provider, have " << Major(); \
  if (!PgDumpCanDumpProvider()) GTEST_SKIP() << "pg_dump is older than the provider (" << Major() << ")"

TEST_F(RealisticSchema, IntoAnEmptySubscriber) {
  REQUIRE_CAPTURE_AND_PG_DUMP();
  Workflow(true, true);
}

TEST_F(RealisticSchema, IntoAnUnpartitionedSubscriberTable) {
  REQUIRE_CAPTURE_AND_PG_DUMP();
  SubscriberSql("CREATE TABLE payment (payment_id int NOT NULL, customer_id int NOT NULL, amount numeric(6,2) NOT "
                "NULL, payment_date timestamptz NOT NULL, PRIMARY KEY (payment_date, payment_id))");
  Workflow(false, true);
}

// The same stream into a subscriber that has the schema already: runs on
// providers newer than the pg_dump at hand (PostgreSQL 18 here).
TEST_F(RealisticSchema, IntoAPreparedSubscriber) {
  if (Major() < 14) GTEST_SKIP() << "DDL capture needs PostgreSQL 14+ on the provider, have " << Major();
  Workflow(true, false);
}

// PostgreSQL 12 cannot publish through a root: the leaves are added one by
// one (and created as tables of their own); a partition created later is
// listed by `missing` with the command that adds it, and that command
// brings it in, rows and all.
TEST_F(RealisticSchema, FromAPg12ProviderLeafByLeaf) {
  if (Major() >= 13) GTEST_SKIP() << "for providers before PostgreSQL 13, have " << Major();
  if (!PgDumpCanDumpProvider()) GTEST_SKIP() << "pg_dump is older than the provider";
  Schema();
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "--all", "--create"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  EXPECT_THAT(add.out, HasSubstr("note: PostgreSQL 12 cannot publish a partitioned table through its root (13+ can): "
                                 "partitions are added one by one"));
  EXPECT_THAT(add.out, HasSubstr("added public.payment_p2022_07"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_class WHERE relname LIKE 'payment_p2022%' AND relkind = 'r' "
                            "AND NOT relispartition"),
            "12");
  auto run = StartRun();
  Wait(run.get());
  ExpectAllIdentical(true, 12, false);
  ProviderSql(kWorkload);
  ProviderSql(kCreatePartition);
  ProviderSql(kFillPartition);
  auto missing = RunLorry(Args({"missing"}));
  EXPECT_EQ(missing.exit_code, 1) << missing.all();
  EXPECT_THAT(missing.out, HasSubstr("not replicated: public.payment_p2023_01 (a partition of public.payment, whose "
                                     "other partitions are replicated one by one; to add it: lorry add --partitions "
                                     "leaves public.payment_p2023_01)"));
  auto add_leaf = RunLorry(Args({"add", "--partitions", "leaves", "--create", "public.payment_p2023_01"}));
  ASSERT_EQ(add_leaf.exit_code, 0) << add_leaf.all();
  Wait(run.get());
  ExpectAllIdentical(true, 13, false);
  auto none = RunLorry(Args({"missing"}));
  EXPECT_EQ(none.exit_code, 0) << none.all();
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

// Without DDL capture a partition created on the provider holds the stream
// (its rows have nowhere to go on the subscriber): wait, status and tables
// name it and the statement that creates it; once it is run, nothing is lost.
TEST_F(RealisticSchema, NewPartitionWithoutCaptureIsNamedWithItsFix) {
  if (Major() < 13) GTEST_SKIP() << "publishing through the root needs PostgreSQL 13+, have " << Major();
  Schema();
  bool create = PgDumpCanDumpProvider();
  if (!create) SubscriberSql(kDdl);
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args(create ? std::vector<std::string>{"add", "--all", "--create"}
                                  : std::vector<std::string>{"add", "--all"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  auto run = StartRun();
  Wait(run.get());

  ProviderSql(kCreatePartition);
  ProviderSql(kFillPartition);
  ProviderSql("INSERT INTO customer (first_name, last_name) VALUES ('after', 'the partition')");
  std::string fix = "CREATE TABLE \"public\".\"payment_p2023_01\" PARTITION OF \"public\".\"payment\" FOR VALUES "
                    "FROM ('2023-01-01 00:00:00+00') TO ('2023-02-01 00:00:00+00');";
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT coalesce(last_error, '') FROM lorry.subscriptions") !=
                                      ""; }))
      << run->Log();
  auto wait = RunLorry(Args({"wait", "--timeout", "3"}));
  EXPECT_EQ(wait.exit_code, 1) << wait.all();
  EXPECT_THAT(wait.err, HasSubstr("the stream is held by an error: "));
  EXPECT_THAT(wait.err, HasSubstr("no partition of relation \"payment\" found for row"));
  EXPECT_THAT(wait.err, HasSubstr("partition public.payment_p2023_01 of public.payment is missing on the subscriber"));
  EXPECT_THAT(wait.err, HasSubstr(fix));
  auto status = RunLorry(Args({"status"}));
  EXPECT_THAT(status.out, HasSubstr(fix)) << status.all();
  auto tables = RunLorry(Args({"tables"}));
  EXPECT_THAT(tables.out, HasSubstr(fix)) << tables.all();
  auto missing = RunLorry(Args({"missing"}));
  EXPECT_EQ(missing.exit_code, 1) << missing.all();
  EXPECT_THAT(missing.out, HasSubstr(fix));

  SubscriberSql(fix);
  Wait(run.get());
  ExpectAllIdentical(true);
  ExpectNothingMissingAndCompareClean(run.get());
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

}  // namespace
}  // namespace lorry::test
