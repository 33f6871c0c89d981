// `lorry add --create`, `lorry missing` and `lorry check` against real
// clusters: tables created from the provider's definitions (with the types
// and schemas they need), and each kind of breaking and harmless difference
// with the exit codes.
#include <sys/stat.h>

#include <fstream>

#include <gmock/gmock.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

class Schema : public TwoClusters {
 protected:
  void Init() {
    auto r = RunLorry(Args({"init"}));
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
  void Add(std::vector<std::string> args) {
    args.insert(args.begin(), "add");
    auto r = RunLorry(Args(args));
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
};

TEST_F(Schema, AddCreateMakesTableWithTypesSchemaIndexesConstraintsAndDefaults) {
  ProviderSql(
      "CREATE SCHEMA app; "
      "CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy'); "
      "CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0); "
      "CREATE TYPE app.pair AS (a integer, b text); "
      "CREATE TABLE app.parent (id int PRIMARY KEY); "
      "CREATE TABLE app.orders (id serial PRIMARY KEY, m app.mood NOT NULL DEFAULT 'ok', qty app.posint, "
      "  p app.pair, moods app.mood[], note text DEFAULT 'none' CHECK (length(note) < 20), "
      "  parent_id int REFERENCES app.parent, code text UNIQUE); "
      "CREATE INDEX orders_m_idx ON app.orders (m) WHERE qty > 1; "
      "CREATE FUNCTION app.trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$; "
      "CREATE TRIGGER orders_trg BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.trg(); "
      "INSERT INTO app.parent VALUES (1); "
      "INSERT INTO app.orders (m, qty, p, moods, parent_id, code) VALUES "
      "  ('happy', 3, ROW(1, 'x'), '{sad,happy}', 1, 'c1'), ('sad', 1, NULL, NULL, NULL, 'c2')");
  Init();
  auto r = RunLorry(Args({"add", "--create", "app.orders"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_THAT(r.out, HasSubstr("created schema app"));
  EXPECT_THAT(r.out, HasSubstr("created type app.mood"));
  EXPECT_THAT(r.out, HasSubstr("created type app.posint"));
  EXPECT_THAT(r.out, HasSubstr("created type app.pair"));
  EXPECT_THAT(r.out, HasSubstr("created table app.orders"));
  EXPECT_THAT(r.out, HasSubstr("foreign key orders_parent_id_fkey of app.orders left out: it references app.parent"));
  EXPECT_THAT(r.out, HasSubstr("added app.orders"));

  EXPECT_EQ(SubscriberValue("SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum "
                            "WHERE enumtypid = 'app.mood'::regtype"),
            "sad,ok,happy");
  EXPECT_EQ(SubscriberValue("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = 'app.posint'::regtype"),
            "CHECK ((VALUE > 0))");
  EXPECT_EQ(SubscriberValue("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) "
                            "FROM pg_attribute WHERE attrelid = 'app.pair'::regclass AND attnum > 0"),
            "a integer, b text");
  // Columns, defaults and NOT NULL as on the provider.
  std::string columns_sql =
      "SELECT string_agg(format('%s %s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
      "  coalesce(pg_get_expr(d.adbin, d.adrelid), '-')), '; ' ORDER BY a.attnum) "
      "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
      "WHERE a.attrelid = 'app.orders'::regclass AND a.attnum > 0 AND NOT a.attisdropped";
  EXPECT_EQ(SubscriberValue(columns_sql), ProviderValue(columns_sql));
  EXPECT_THAT(SubscriberValue(columns_sql), HasSubstr("nextval('app.orders_id_seq'::regclass)"));
  // Indexes and constraints, but not the trigger nor the foreign key to a missing table.
  std::string indexes_sql =
      "SELECT string_agg(pg_get_indexdef(indexrelid), '; ' ORDER BY pg_get_indexdef(indexrelid)) FROM pg_index "
      "WHERE indrelid = 'app.orders'::regclass";
  EXPECT_EQ(SubscriberValue(indexes_sql), ProviderValue(indexes_sql));
  EXPECT_THAT(SubscriberValue(indexes_sql), HasSubstr("WHERE ((qty)::integer > 1)"));
  EXPECT_EQ(SubscriberValue("SELECT string_agg(conname || ':' || contype::text, ',' ORDER BY conname) FROM pg_constraint "
                            "WHERE conrelid = 'app.orders'::regclass"),
            "orders_code_key:u,orders_note_check:c,orders_pkey:p");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.orders'::regclass"), "0");
  EXPECT_EQ(SubscriberValue("SELECT to_regclass('app.parent') IS NULL"), "t");  // only what was named

  // The domain's check is in force on the subscriber.
  auto conn = ConnectSubscriber();
  EXPECT_FALSE(conn.Exec("INSERT INTO app.orders (qty) VALUES (-1)").ok());

  // And the table replicates, values of every type included.
  LorryProcess run(Args({"run"}));
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM app.orders") == "2"; }))
      << run.Log();
  ProviderSql("INSERT INTO app.orders (m, qty, p, moods, code) VALUES ('ok', 7, ROW(2, 'y'), '{ok}', 'c3')");
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM app.orders") == "3"; }))
      << run.Log();
  ExpectSameContent("app.orders");

  // Adding it again with --create creates nothing.
  auto again = RunLorry(Args({"add", "--create", "app.orders"}));
  EXPECT_EQ(again.exit_code, 0) << again.all();
  EXPECT_THAT(again.out, Not(HasSubstr("created")));
}

TEST_F(Schema, AddCreateWithAllCreatesOnlyMissingTablesAndTypes) {
  BothSql("CREATE TYPE color AS ENUM ('red', 'blue'); CREATE TABLE present (id int PRIMARY KEY, c color)");
  ProviderSql("CREATE TABLE absent (id int PRIMARY KEY, c color, n numeric(10,2) DEFAULT 1.5)");
  Init();
  auto r = RunLorry(Args({"add", "--all", "--create"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_THAT(r.out, HasSubstr("created table public.absent"));
  EXPECT_THAT(r.out, Not(HasSubstr("created type")));
  EXPECT_THAT(r.out, Not(HasSubstr("created table public.present")));
  EXPECT_EQ(SubscriberValue("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'absent'::regclass"),
            "1.5");
}

TEST_F(Schema, AddCreateNamesAMissingOrTooOldPgDump) {
  ProviderSql("CREATE TABLE t (id int PRIMARY KEY)");
  Init();
  auto missing = RunLorry(Args({"add", "--create", "--pg-dump", "/nonexistent/pg_dump", "t"}));
  EXPECT_EQ(missing.exit_code, 2) << missing.all();
  EXPECT_THAT(missing.err, HasSubstr("cannot run /nonexistent/pg_dump"));

  // A pg_dump older than the provider: says so, and how to point lorry at another.
  std::string fake = std::string(::testing::TempDir()) + "/old_pg_dump";
  {
    std::ofstream f(fake);
    f << "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n";
  }
  chmod(fake.c_str(), 0755);
  auto old = RunLorry(Args({"add", "--create", "--pg-dump", fake, "t"}));
  EXPECT_EQ(old.exit_code, 2) << old.all();
  EXPECT_THAT(old.err, HasSubstr("is version 9, which cannot dump the provider's PostgreSQL 15 server"));
  EXPECT_THAT(old.err, HasSubstr("--pg-dump"));
  EXPECT_THAT(old.err, HasSubstr("LORRY_PG_DUMP="));
  EXPECT_EQ(SubscriberValue("SELECT to_regclass('public.t') IS NULL"), "t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables"), "0");  // nothing added
}

TEST_F(Schema, MissingListsUnreplicatedAndAbsentTables) {
  BothSql("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)");
  ProviderSql("CREATE TABLE c (id int PRIMARY KEY)");
  Init();
  Add({"a", "b"});
  auto none_missing_sub = RunLorry(Args({"missing"}));
  EXPECT_EQ(none_missing_sub.exit_code, 1) << none_missing_sub.all();
  EXPECT_THAT(none_missing_sub.out, HasSubstr("not replicated: public.c"));
  EXPECT_THAT(none_missing_sub.out, Not(HasSubstr("public.a")));

  SubscriberSql("DROP TABLE b");
  auto r = RunLorry(Args({"missing", "--json"}));
  EXPECT_EQ(r.exit_code, 1) << r.all();
  auto j = json::parse(r.out);
  EXPECT_EQ(j["not_replicated"], json::array({"public.c"}));
  EXPECT_EQ(j["missing_on_subscriber"], json::array({"public.b"}));
  EXPECT_EQ(j["missing_on_provider"], json::array());

  SubscriberSql("CREATE TABLE b (id int PRIMARY KEY)");
  ProviderSql("DROP TABLE c");
  auto ok = RunLorry(Args({"missing"}));
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_THAT(ok.out, HasSubstr("nothing missing"));
}

TEST_F(Schema, CheckReportsBreakingAndHarmlessDifferences) {
  ProviderSql(
      "CREATE TABLE same (id int PRIMARY KEY, v text); "
      "CREATE TABLE harmless (id int PRIMARY KEY, n integer, s varchar(10), v text); "
      "CREATE TABLE breaks (id int PRIMARY KEY, gone text, t text, s varchar(20), num numeric(12,2), v int); "
      "CREATE TABLE nokey (a int, b int)");
  SubscriberSql(
      "CREATE TABLE same (id int PRIMARY KEY, v text); "
      "CREATE TABLE harmless (id int PRIMARY KEY, n bigint, s text, v text, extra int DEFAULT 0, opt int); "
      "CREATE INDEX harmless_v_idx ON harmless (v); "
      "CREATE TABLE breaks (id int, t integer, s varchar(10), num numeric(5,2), v int, must int NOT NULL); "
      "CREATE TABLE nokey (a int, b int)");
  Init();
  Add({"same", "harmless"});

  auto ok = RunLorry(Args({"check"}));  // every replicated table
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_THAT(ok.out, HasSubstr("public.same: ok\n"));
  EXPECT_THAT(ok.out, HasSubstr("public.harmless: ok, with harmless differences"));
  EXPECT_THAT(ok.out, HasSubstr("harmless  column n is integer on the provider and bigint on the subscriber"));
  EXPECT_THAT(ok.out, HasSubstr("harmless  column s is character varying(10) on the provider and text"));
  EXPECT_THAT(ok.out, HasSubstr("harmless  column extra exists only on the subscriber (integer): it gets its default"));
  EXPECT_THAT(ok.out, HasSubstr("harmless  column opt exists only on the subscriber (integer): it gets NULL"));
  EXPECT_THAT(ok.out, HasSubstr("harmless  index harmless_v_idx (btree (v)) exists only on the subscriber"));

  auto bad = RunLorry(Args({"check", "breaks", "nokey", "same"}));
  EXPECT_EQ(bad.exit_code, 1) << bad.all();
  EXPECT_THAT(bad.out, HasSubstr("public.breaks: 5 differences that break replication"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    column gone (text) is missing on the subscriber"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    column t is text on the provider and integer on the subscriber"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    column s is character varying(20) on the provider and character "
                                 "varying(10) on the subscriber: longer provider values would fail"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    column num is numeric(12,2) on the provider and numeric(5,2)"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    column must exists only on the subscriber and is NOT NULL without a "
                                 "default"));
  EXPECT_THAT(bad.out, HasSubstr("harmless  no index on the key columns on the subscriber"));
  EXPECT_THAT(bad.out, HasSubstr("harmless  index breaks_pkey (UNIQUE btree (id)) of the provider is missing"));
  EXPECT_THAT(bad.out, HasSubstr("public.nokey: 1 difference that break"));
  EXPECT_THAT(bad.out, HasSubstr("BREAKS    no usable key on the provider"));
  EXPECT_THAT(bad.out, HasSubstr("public.same: ok"));
  EXPECT_THAT(bad.err, HasSubstr("2 tables with differences that break replication"));

  auto j = RunLorry(Args({"check", "--json", "nokey"}));
  EXPECT_EQ(j.exit_code, 1) << j.all();
  auto parsed = json::parse(j.out);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["table"], "public.nokey");
  EXPECT_EQ(parsed[0]["ok"], false);
  EXPECT_EQ(parsed[0]["breaking"].size(), 1u);

  SubscriberSql("DROP TABLE same");
  auto gone = RunLorry(Args({"check", "same"}));
  EXPECT_EQ(gone.exit_code, 1) << gone.all();
  EXPECT_THAT(gone.out, HasSubstr("BREAKS    the table is missing on the subscriber"));
}

}  // namespace
}  // namespace lorry::test
