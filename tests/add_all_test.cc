// `lorry add --all` on what a real database holds: the filters that choose
// among its tables (--exclude, --include-schema, --exclude-schema), what it
// says it skipped, the sequences it takes (used by defaults, free-standing,
// of every shape) and `lorry check` on generated, identity and partition
// columns.
#include <gmock/gmock.h>
#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class AddAll : public TwoClusters {
 protected:
  std::string Replicated() const {
    return SubscriberValue("SELECT coalesce(string_agg(nspname || '.' || relname, ',' ORDER BY nspname, relname), "
                           "'') FROM lorry.tables");
  }
};

TEST_F(AddAll, ExcludeIncludeSchemaAndExcludeSchemaSaySkippedAndMissingLists) {
  BothSql(R"sql(
    CREATE SCHEMA app; CREATE SCHEMA audit; CREATE SCHEMA scratch;
    CREATE TABLE app.orders (id int PRIMARY KEY); CREATE TABLE app.tmp_orders (id int PRIMARY KEY);
    CREATE TABLE app.orders_old (id int PRIMARY KEY); CREATE TABLE audit.log (id int PRIMARY KEY);
    CREATE TABLE scratch.x (id int PRIMARY KEY); CREATE TABLE public.tmp_1 (id int PRIMARY KEY);
    CREATE SEQUENCE app.tmp_seq; CREATE SEQUENCE app.invoice_seq;
  )sql");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();

  auto refused = RunLorry(Args({"add", "--exclude", "x", "app.orders"}));  // one value per --exclude
  EXPECT_EQ(refused.exit_code, 2) << refused.all();
  EXPECT_THAT(refused.err, HasSubstr("go with --all"));

  auto add = RunLorry(Args({"add", "--all", "--exclude", "*.tmp_*", "--exclude", "app.%\\_old",
                            "--exclude-schema", "scratch"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  EXPECT_EQ(Replicated(), "app.orders,audit.log");
  EXPECT_THAT(add.out, HasSubstr("skipped app.tmp_orders (--exclude '*.tmp_*')"));
  EXPECT_THAT(add.out, HasSubstr("skipped app.orders_old (--exclude 'app.%\\_old')"));
  EXPECT_THAT(add.out, HasSubstr("skipped scratch.x (--exclude-schema scratch)"));
  EXPECT_THAT(add.out, HasSubstr("skipped public.tmp_1 (--exclude '*.tmp_*')"));
  EXPECT_THAT(add.out, HasSubstr("skipped sequence app.tmp_seq (--exclude '*.tmp_*')"));
  EXPECT_THAT(add.out, HasSubstr("added sequence app.invoice_seq"));
  EXPECT_EQ(SubscriberValue("SELECT string_agg(nspname || '.' || relname, ',') FROM lorry.sequences"),
            "app.invoice_seq");

  auto missing = RunLorry(Args({"missing"}));
  EXPECT_EQ(missing.exit_code, 1) << missing.all();
  for (const char* t : {"app.tmp_orders", "app.orders_old", "scratch.x", "public.tmp_1"})
    EXPECT_THAT(missing.out, HasSubstr(fmt::format("not replicated: {} (to add it: lorry add {})", t, t)));

  auto only = RunLorry(Args({"add", "--all", "--include-schema", "scratch", "--include-schema", "public"}));
  ASSERT_EQ(only.exit_code, 0) << only.all();
  EXPECT_THAT(only.out, HasSubstr("skipped app.tmp_orders (its schema is not in --include-schema)"));
  EXPECT_EQ(Replicated(), "app.orders,audit.log,public.tmp_1,scratch.x");
}

TEST_F(AddAll, TableWithoutIdentityIsNamedByMissingWithTheFix) {
  BothSql("CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE nokey (a int)");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "keyed"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  auto missing = RunLorry(Args({"missing"}));
  EXPECT_THAT(missing.out, HasSubstr("not replicated: public.nokey (no primary key or replica identity: add a primary "
                                     "key (or ALTER TABLE \"public\".\"nokey\" REPLICA IDENTITY FULL), then lorry add "
                                     "public.nokey; or lorry add --insert-only public.nokey)"));
}

// Sequences used through defaults (not owned), free-standing ones, and
// every shape: descending, cycling, custom bounds and increments. Each
// follows the provider, and is never moved back against its direction.
TEST_F(AddAll, SequencesOfEveryShapeFollowTheirColumns) {
  BothSql(R"sql(
    CREATE SEQUENCE up_seq START 10 INCREMENT 7 MAXVALUE 100000;
    CREATE SEQUENCE down_seq INCREMENT -3 MINVALUE -1000000 MAXVALUE -1 START -1;
    CREATE SEQUENCE ring_seq MINVALUE 1 MAXVALUE 4 CYCLE;
    CREATE SEQUENCE free_seq START 500;
    CREATE TABLE t (id int PRIMARY KEY DEFAULT nextval('up_seq'), d int DEFAULT nextval('down_seq'),
                    r int DEFAULT nextval('ring_seq'), v text);
  )sql");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "--all"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  LorryProcess run(Args({"run"}));
  ProviderSql("INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 10)");  // ring_seq wrapped twice
  ProviderSql("SELECT nextval('free_seq') FROM generate_series(1, 5)");
  Wait(&run);
  const char* seqs[] = {"up_seq", "down_seq", "ring_seq", "free_seq"};
  for (const char* s : seqs) {
    std::string sql = fmt::format("SELECT last_value || '/' || is_called FROM {}", s);
    EXPECT_EQ(SubscriberValue(sql), ProviderValue(sql)) << s;
  }
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM down_seq"), "-28");
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM ring_seq"), "2");
  ExpectSameContent("t");

  // Ahead on the subscriber in its own direction: not moved back.
  SubscriberSql("SELECT setval('down_seq', -900); SELECT setval('up_seq', 9000)");
  ProviderSql("INSERT INTO t (v) VALUES ('y')");
  Wait(&run);
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM down_seq"), "-900");
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM up_seq"), "9000");
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM ring_seq"), ProviderValue("SELECT last_value FROM ring_seq"));
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

// Identity columns on either side or only on the subscriber, GENERATED
// ALWAYS included: rows stream into them with the provider's values.
TEST_F(AddAll, IdentityColumnsOnEitherSideTakeTheProvidersValues) {
  ProviderSql("CREATE TABLE a (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, n int "
              "GENERATED BY DEFAULT AS IDENTITY); "
              "CREATE TABLE b (id int PRIMARY KEY, v text); "
              "CREATE TABLE c (id int PRIMARY KEY, n int); "
              "INSERT INTO a (v) SELECT 'a' || g FROM generate_series(1, 5) g; INSERT INTO b VALUES (1, 'b')");
  SubscriberSql("CREATE TABLE a (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, n int "
                "GENERATED BY DEFAULT AS IDENTITY); "
                "CREATE TABLE b (id int PRIMARY KEY, v text, seq bigint NOT NULL GENERATED ALWAYS AS IDENTITY); "
                "CREATE TABLE c (id int PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY)");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  // c.n takes the provider's updates, which an ALWAYS identity column refuses.
  auto refused = RunLorry(Args({"add", "c"}));
  EXPECT_EQ(refused.exit_code, 2) << refused.all();
  EXPECT_THAT(refused.err, HasSubstr("column n of table public.c is GENERATED ALWAYS AS IDENTITY on the subscriber but "
                                     "not on the provider"));
  EXPECT_THAT(refused.err, HasSubstr("ALTER TABLE \"public\".\"c\" ALTER COLUMN \"n\" SET GENERATED BY DEFAULT;"));
  auto add = RunLorry(Args({"add", "a", "b"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();  // b.seq: a subscriber-only identity counts as a default
  auto check = RunLorry(Args({"check", "b"}));
  EXPECT_EQ(check.exit_code, 0) << check.all();
  EXPECT_THAT(check.out, HasSubstr("column seq exists only on the subscriber (bigint): it gets a value of its "
                                   "identity sequence"));
  LorryProcess run(Args({"run"}));
  Wait(&run);
  ProviderSql("INSERT INTO a (v) SELECT 'more' FROM generate_series(1, 5); "
              "UPDATE a SET v = v || '!', n = n + 100 WHERE id % 2 = 0; DELETE FROM a WHERE id = 3; "
              "INSERT INTO b VALUES (2, 'two'); UPDATE b SET v = 'one' WHERE id = 1");
  Wait(&run);
  ExpectSameContent("a");
  EXPECT_EQ(SubscriberValue("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM b"), "1:one,2:two");
  // The identity sequences behind a's columns are synced.
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM a_id_seq"), "10");
  EXPECT_EQ(SubscriberValue("SELECT last_value FROM a_n_seq"), "10");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

TEST_F(AddAll, CheckUnderstandsGeneratedColumnsAndFixesPartitionsAtTheRoot) {
  ProviderSql("CREATE TABLE g (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED, "
              "plain_sub int GENERATED ALWAYS AS (a + 1) STORED)");
  SubscriberSql("CREATE TABLE g (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED, "
                "plain_sub int)");
  BothSql("CREATE TABLE p (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k); "
          "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1); CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2)");
  ProviderSql("ALTER TABLE p ADD COLUMN note text");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  auto add = RunLorry(Args({"add", "g"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  auto check = RunLorry(Args({"check", "g", "p1"}));
  EXPECT_THAT(check.out, Not(HasSubstr("twice exists only on the subscriber")));
  EXPECT_THAT(check.out, HasSubstr("column plain_sub is generated on the provider and a plain column on the "
                                   "subscriber: generated values are not replicated, it gets NULL"));
  EXPECT_THAT(check.out, HasSubstr("column note (text) is missing on the subscriber. Fix: ALTER TABLE \"public\".\"p\" "
                                   "ADD COLUMN \"note\" text;"));
  EXPECT_THAT(check.out, Not(HasSubstr("ALTER TABLE \"public\".\"p1\"")));
}

}  // namespace
}  // namespace lorry::test
