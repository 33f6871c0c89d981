// Deferred indexes against a real subscriber: what is dropped and what is
// kept, rebuilds that give back exactly the same indexes and constraints
// (pg_get_indexdef / pg_get_constraintdef), in parallel, and crash safety: a
// rebuild connection killed or stopped mid-build loses nothing and the next
// rebuild finishes the work. Only the subscriber side matters here.
#include <gmock/gmock.h>
#include <fmt/format.h>

#include <thread>

#include "fixture.h"
#include "sync/deferred_indexes.h"

namespace lorry::test {
namespace {

using ::testing::UnorderedElementsAre;
using ::testing::HasSubstr;

const pg::QualifiedName kParent{"Odd \"Schema\" ü", "Parent Table"};
const pg::QualifiedName kChild{"public", "child"};

class DeferredIndexes : public TwoClusters {
 protected:
  void Init() {
    auto r = RunLorry(Args({"init"}));
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }

  // Every index and constraint of the user's schemas, with the flags a
  // rebuild must give back, one per line in a stable order.
  std::string Snapshot() const {
    return SubscriberValue(R"sql(
      WITH ns AS (SELECT oid FROM pg_namespace
                  WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'lorry', 'pg_toast'))
      SELECT string_agg(x, E'\n' ORDER BY x COLLATE "C") FROM (
        SELECT 'index ' || indexdef AS x FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'lorry')
        UNION ALL
        SELECT format('constraint %s %I %s deferrable=%s deferred=%s validated=%s index=%s', conrelid::regclass,
                      conname, pg_get_constraintdef(oid), condeferrable, condeferred, convalidated,
                      coalesce(conindid::regclass::text, '-'))
        FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
        UNION ALL
        SELECT format('flags %s replident=%s clustered=%s valid=%s', indexrelid::regclass, indisreplident,
                      indisclustered, indisvalid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
        UNION ALL
        SELECT format('trigger %s %s %s internal=%s deferrable=%s', tgrelid::regclass, tgfoid::regproc,
                      (SELECT conname FROM pg_constraint WHERE oid = tgconstraint), tgisinternal, tgdeferrable)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
        UNION ALL
        SELECT format('tablespace %s %s', oid::regclass, coalesce(reltablespace::text, '-'))
        FROM pg_class WHERE reltablespace <> 0 AND relnamespace IN (SELECT oid FROM ns)
        UNION ALL
        SELECT format('table %s replident=%s', oid::regclass, relreplident) FROM pg_class
        WHERE relkind = 'r' AND relnamespace IN (SELECT oid FROM ns)) s)sql");
  }

  std::string IndexesOf(const pg::QualifiedName& t) const {
    return SubscriberValue(fmt::format(
        "SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname COLLATE \"C\"), '') FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = '{}'::regclass",
        t.Quoted()));
  }

  std::string Records() const {
    return SubscriberValue(
        "SELECT coalesce(string_agg(relname || ':' || index_name || ':' || coalesce(constraint_name, '-'), ',' "
        "ORDER BY relname COLLATE \"C\", index_name COLLATE \"C\"), '') FROM lorry.deferred_indexes");
  }

  int64_t Count() const {
    auto c = ConnectSubscriber();
    auto n = sync::CountDeferredIndexes(c, "main");
    EXPECT_TRUE(n.ok()) << n.status().message();
    return n.ok() ? *n : -1;
  }

  // In one transaction, as a copy does: defers, loads rows, commits.
  std::vector<sync::DeferredIndex> DeferAndLoad(const std::vector<pg::QualifiedName>& tables,
                                                const std::string& load_sql) {
    auto c = ConnectSubscriber();
    EXPECT_TRUE(c.Exec("BEGIN").ok());
    std::vector<sync::DeferredIndex> all;
    for (const auto& t : tables) {
      auto d = sync::DeferIndexes(c, "main", t);
      EXPECT_TRUE(d.ok()) << d.status().message();
      if (d.ok()) all.insert(all.end(), d->begin(), d->end());
    }
    if (!load_sql.empty()) {
      auto r = c.Exec(load_sql);
      EXPECT_TRUE(r.ok()) << r.status().message();
    }
    auto r = c.Exec("COMMIT");
    EXPECT_TRUE(r.ok()) << r.status().message();
    return all;
  }

  Status Rebuild(int jobs, const std::atomic<bool>& stop, sync::IndexProgress* progress = nullptr,
                 const std::optional<pg::QualifiedName>& table = std::nullopt) {
    return sync::RebuildDeferredIndexes(Subscriber(), "main", table, jobs, "64MB", stop, progress);
  }

  // Pid of the index-build backend waiting for a lock, or "" after the timeout.
  std::string WaitForBlockedBuild() const {
    std::string pid;
    Eventually(
        [&] {
          pid = SubscriberValue(
              "SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity WHERE application_name = "
              "'lorry_index_build' AND wait_event_type = 'Lock' AND datname = current_database()");
          return !pid.empty();
        },
        30);
    return pid;
  }

  // Two plain tables with a primary key and two indexes each; `b` is bigger,
  // so its builds are scheduled first.
  void CreateTwoTables() {
    SubscriberSql(R"sql(
      CREATE TABLE a (id int PRIMARY KEY, x int, y text);
      CREATE INDEX a_x ON a (x);
      CREATE INDEX a_y ON a (y);
      CREATE TABLE b (id int PRIMARY KEY, x int, y text);
      CREATE INDEX b_x ON b (x);
      CREATE UNIQUE INDEX b_y ON b (y);
    )sql");
  }
};

TEST_F(DeferredIndexes, DeferDropsTheRightOnesAndRebuildGivesThemBackIdentical) {
  Init();
  std::string ddl = R"sql(
    CREATE SCHEMA "Odd ""Schema"" ü";
    CREATE TABLE "Odd ""Schema"" ü"."Parent Table" (
      id int PRIMARY KEY,
      code text NOT NULL,
      "Mixed Case" int,
      payload jsonb,
      during tsrange,
      n int,
      CONSTRAINT "code ""uq"" ü" UNIQUE (code) WITH (fillfactor = 70),
      CONSTRAINT n_uq UNIQUE NULLS NOT DISTINCT (n) INCLUDE ("Mixed Case") DEFERRABLE INITIALLY DEFERRED,
      CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&),
      CONSTRAINT positive CHECK (id > 0));
    CREATE INDEX plain_idx ON "Odd ""Schema"" ü"."Parent Table" ("Mixed Case");
    CREATE INDEX expr_idx ON "Odd ""Schema"" ü"."Parent Table" (lower(code), (payload ->> 'k'));
    CREATE INDEX partial_idx ON "Odd ""Schema"" ü"."Parent Table" (code text_pattern_ops) WHERE "Mixed Case" > 10;
    CREATE UNIQUE INDEX "Quoted ""Idx"" É" ON "Odd ""Schema"" ü"."Parent Table" ("Mixed Case" DESC NULLS LAST);
    CREATE INDEX commented_idx ON "Odd ""Schema"" ü"."Parent Table" (n);
    COMMENT ON INDEX "Odd ""Schema"" ü".commented_idx IS 'kept: a comment is not in the definition';
    CREATE TABLE child (
      id bigint PRIMARY KEY,
      parent_id int NOT NULL REFERENCES "Odd ""Schema"" ü"."Parent Table" (id),
      ref text NOT NULL);
    CREATE INDEX child_parent ON child (parent_id);
    CREATE UNIQUE INDEX child_ref ON child (ref);
    ALTER TABLE child REPLICA IDENTITY USING INDEX child_ref;
  )sql";
  // NULLS NOT DISTINCT exists from PostgreSQL 15 on.
  if (subscriber_cluster()->major_version() < 15) ddl.replace(ddl.find("NULLS NOT DISTINCT "), 19, "");
  SubscriberSql(ddl);
  const std::string before = Snapshot();
  ASSERT_THAT(before, HasSubstr("PRIMARY KEY"));

  auto deferred = DeferAndLoad({kParent, kChild}, R"sql(
    INSERT INTO "Odd ""Schema"" ü"."Parent Table"
      SELECT g, 'code' || g, g, jsonb_build_object('k', g), tsrange(now()::timestamp + g * interval '1 hour',
             now()::timestamp + g * interval '1 hour' + interval '30 minutes'), g
      FROM generate_series(1, 5000) g;
    INSERT INTO child SELECT g, g, 'ref' || g FROM generate_series(1, 5000) g;
  )sql");
  std::vector<std::string> names;
  for (const auto& d : deferred) names.push_back(d.table.name + ":" + d.index_name);
  // Kept: the parent's PK (the child's FK references it), the commented index,
  // the replica identity index; CHECK, NOT NULL and FK constraints untouched.
  EXPECT_THAT(names, UnorderedElementsAre("Parent Table:Quoted \"Idx\" É", "Parent Table:code \"uq\" ü",
                                 "Parent Table:expr_idx", "Parent Table:n_uq", "Parent Table:no_overlap",
                                 "Parent Table:partial_idx", "Parent Table:plain_idx", "child:child_parent",
                                 "child:child_pkey"));
  for (const auto& d : deferred) {
    if (d.index_name == "code \"uq\" ü") {
      EXPECT_EQ(d.constraint_name, d.index_name);
      EXPECT_EQ(d.definition,
                "CREATE UNIQUE INDEX \"code \"\"uq\"\" ü\" ON \"Odd \"\"Schema\"\" ü\".\"Parent Table\" USING btree "
                "(code) WITH (fillfactor='70'); ALTER TABLE \"Odd \"\"Schema\"\" ü\".\"Parent Table\" ADD CONSTRAINT "
                "\"code \"\"uq\"\" ü\" UNIQUE USING INDEX \"code \"\"uq\"\" ü\"");
    }
    if (d.index_name == "plain_idx") {
      EXPECT_EQ(d.constraint_name, "");
      EXPECT_EQ(d.definition,
                "CREATE INDEX plain_idx ON \"Odd \"\"Schema\"\" ü\".\"Parent Table\" USING btree (\"Mixed Case\")");
    }
  }
  EXPECT_EQ(IndexesOf(kParent), "Parent Table_pkey,commented_idx");
  EXPECT_EQ(IndexesOf(kChild), "child_ref");
  EXPECT_EQ(Count(), 9);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_constraint WHERE contype IN ('f', 'c') AND conrelid IN "
                            "('child'::regclass, '\"Odd \"\"Schema\"\" ü\".\"Parent Table\"'::regclass)"), "2");

  std::atomic<bool> stop{false};
  sync::IndexProgress progress;
  Status s = Rebuild(2, stop, &progress);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(progress.total.load(), 9);
  EXPECT_EQ(progress.done.load(), 9);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Count(), 0);
  // The unique constraints hold again.
  auto c = ConnectSubscriber();
  auto dup = c.Exec(R"(INSERT INTO "Odd ""Schema"" ü"."Parent Table" (id, code) VALUES (9999, 'code1'))");
  EXPECT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("code \"uq\" ü"));

  // Nothing left: a second rebuild is a no-op.
  sync::IndexProgress again;
  ASSERT_TRUE(Rebuild(2, stop, &again).ok());
  EXPECT_EQ(again.total.load(), 0);
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(DeferredIndexes, StorageParametersTablespacesAndDeferrableKeysSurvive) {
  Init();
  const std::string ts = "ts " + dbname_;  // tablespaces are per cluster
  auto c = ConnectSubscriber();
  ASSERT_TRUE(c.Exec("SET allow_in_place_tablespaces = on").ok());
  auto created = c.Exec(fmt::format("CREATE TABLESPACE {} LOCATION ''", pg::QuoteIdent(ts)));
  ASSERT_TRUE(created.ok()) << created.status().message();
  SubscriberSql(fmt::format(R"sql(
    CREATE TABLE k (id int, code text, during tsrange, x int,
      CONSTRAINT k_pkey PRIMARY KEY (id) WITH (fillfactor = 60) USING INDEX TABLESPACE {0},
      CONSTRAINT k_code UNIQUE (code) DEFERRABLE,
      CONSTRAINT k_ex EXCLUDE USING gist (during WITH &&) USING INDEX TABLESPACE {0} WHERE (x > 0));
    CREATE INDEX k_x ON k (x) WITH (fillfactor = 50) TABLESPACE {0} WHERE x IS NOT NULL;
  )sql", pg::QuoteIdent(ts)));
  const std::string before = Snapshot();
  ASSERT_THAT(before, HasSubstr("tablespace k_pkey"));
  auto deferred = DeferAndLoad({{"public", "k"}}, "INSERT INTO k SELECT g, 'c' || g, NULL, g FROM generate_series(1, 1000) g");
  EXPECT_EQ(deferred.size(), 4u);
  std::atomic<bool> stop{false};
  Status s = Rebuild(2, stop);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Count(), 0);
  SubscriberSql("DROP TABLE k");
  ASSERT_TRUE(subscriber_cluster()->Execute(fmt::format("DROP TABLESPACE {}", pg::QuoteIdent(ts))).ok());
}

TEST_F(DeferredIndexes, KilledRebuildConnectionLosesNothingAndTheNextRebuildFinishes) {
  Init();
  CreateTwoTables();
  const std::string before = Snapshot();
  auto deferred = DeferAndLoad({{"public", "a"}, {"public", "b"}},
                               "INSERT INTO a SELECT g, g, 'a' || g FROM generate_series(1, 1000) g;"
                               "INSERT INTO b SELECT g, g, 'b' || g FROM generate_series(1, 20000) g;");
  ASSERT_EQ(deferred.size(), 6u);
  EXPECT_EQ(IndexesOf({"public", "a"}), "");
  EXPECT_EQ(IndexesOf({"public", "b"}), "");

  // Holds b so that its first build waits; then kills that build's backend.
  auto blocker = ConnectSubscriber();
  ASSERT_TRUE(blocker.Exec("BEGIN; LOCK TABLE b IN SHARE ROW EXCLUSIVE MODE").ok());
  std::atomic<bool> stop{false};
  Status result;
  std::thread rebuild([&] { result = Rebuild(1, stop); });
  std::string pid = WaitForBlockedBuild();
  ASSERT_FALSE(pid.empty());
  EXPECT_EQ(SubscriberValue("SELECT pg_terminate_backend(" + pid + ")"), "t");
  rebuild.join();
  EXPECT_EQ(result.kind(), Status::Kind::kConnection) << result.ToString();
  ASSERT_TRUE(blocker.Exec("ROLLBACK").ok());

  // Every index is on its table or recorded; b (bigger, first) was cut off
  // at its first build, so nothing of b or a was rebuilt.
  EXPECT_EQ(Records(), "a:a_pkey:a_pkey,a:a_x:-,a:a_y:-,b:b_pkey:b_pkey,b:b_x:-,b:b_y:-");
  EXPECT_EQ(IndexesOf({"public", "b"}), "");

  std::atomic<bool> no_stop{false};
  Status s = Rebuild(2, no_stop);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Count(), 0);
}

TEST_F(DeferredIndexes, StopCancelsTheBuildInProgressAndKeepsItsRecord) {
  Init();
  CreateTwoTables();
  const std::string before = Snapshot();
  DeferAndLoad({{"public", "a"}, {"public", "b"}},
               "INSERT INTO a SELECT g, g, 'a' || g FROM generate_series(1, 20000) g;"
               "INSERT INTO b SELECT g, g, 'b' || g FROM generate_series(1, 1000) g;");
  // a is bigger and goes first; its builds wait for the lock until stopped.
  auto blocker = ConnectSubscriber();
  ASSERT_TRUE(blocker.Exec("BEGIN; LOCK TABLE a IN SHARE ROW EXCLUSIVE MODE").ok());
  std::atomic<bool> stop{false};
  sync::IndexProgress progress;
  Status result;
  std::thread rebuild([&] { result = Rebuild(2, stop, &progress); });
  ASSERT_FALSE(WaitForBlockedBuild().empty());
  auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  rebuild.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, std::chrono::seconds(5));
  EXPECT_EQ(result.kind(), Status::Kind::kCancelled) << result.ToString();
  ASSERT_TRUE(blocker.Exec("ROLLBACK").ok());
  EXPECT_EQ(progress.total.load(), 6);
  // Whatever b built meanwhile (the second job) is off the list; a is intact.
  EXPECT_EQ(Count(), 6 - progress.done.load());
  EXPECT_EQ(IndexesOf({"public", "a"}), "");
  EXPECT_THAT(Records(), HasSubstr("a:a_pkey:a_pkey,a:a_x:-,a:a_y:-"));

  std::atomic<bool> no_stop{false};
  ASSERT_TRUE(Rebuild(2, no_stop).ok());
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Count(), 0);
}

TEST_F(DeferredIndexes, RebuildOfOneTableLeavesTheOthersDeferred) {
  Init();
  CreateTwoTables();
  const std::string before = Snapshot();
  DeferAndLoad({{"public", "a"}, {"public", "b"}}, "");
  std::atomic<bool> stop{false};
  ASSERT_TRUE(Rebuild(2, stop, nullptr, pg::QualifiedName{"public", "a"}).ok());
  EXPECT_EQ(Records(), "b:b_pkey:b_pkey,b:b_x:-,b:b_y:-");
  EXPECT_EQ(IndexesOf({"public", "a"}), "a_pkey,a_x,a_y");
  auto c = ConnectSubscriber();
  auto n = sync::CountDeferredIndexes(c, "main", pg::QualifiedName{"public", "b"});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  ASSERT_TRUE(Rebuild(2, stop).ok());
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(DeferredIndexes, RecordsOfExistingIndexesOrDroppedTablesAreJustRemoved) {
  Init();
  SubscriberSql("CREATE TABLE t (id int PRIMARY KEY, x int); CREATE INDEX t_x ON t (x)");
  const std::string before = Snapshot();
  // As if lorry died after a build committed but its record was not deleted
  // (cannot happen, they share a transaction), and a table dropped by hand.
  SubscriberSql(R"sql(
    INSERT INTO lorry.deferred_indexes (subscription, nspname, relname, index_name, constraint_name, definition)
    VALUES ('main', 'public', 't', 't_x', NULL, 'CREATE INDEX t_x ON public.t USING btree (x)'),
           ('main', 'public', 't', 't_pkey', 't_pkey', 'ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)'),
           ('main', 'public', 'gone', 'gone_x', NULL, 'CREATE INDEX gone_x ON public.gone USING btree (x)');
  )sql");
  std::atomic<bool> stop{false};
  sync::IndexProgress progress;
  Status s = Rebuild(2, stop, &progress);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(progress.done.load(), 3);
  EXPECT_EQ(Count(), 0);
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(DeferredIndexes, FailedBuildKeepsItsRecordAndTheOthersAreBuilt) {
  Init();
  SubscriberSql("CREATE TABLE t (id int PRIMARY KEY, code text UNIQUE, x int); CREATE INDEX t_x ON t (x)");
  const std::string before = Snapshot();
  DeferAndLoad({{"public", "t"}}, "INSERT INTO t VALUES (1, 'dup', 1), (2, 'dup', 2)");
  std::atomic<bool> stop{false};
  Status s = Rebuild(1, stop);
  EXPECT_EQ(s.kind(), Status::Kind::kServer) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("t_code_key"));
  EXPECT_THAT(s.message(), HasSubstr("1 deferred indexes not rebuilt"));
  EXPECT_EQ(Records(), "t:t_code_key:t_code_key");
  EXPECT_EQ(IndexesOf({"public", "t"}), "t_pkey,t_x");

  // Once the data is fixed the next rebuild finishes.
  SubscriberSql("UPDATE t SET code = 'other' WHERE id = 2");
  ASSERT_TRUE(Rebuild(1, stop).ok());
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(DeferredIndexes, PartitionedAndMissingTables) {
  Init();
  SubscriberSql(R"sql(
    CREATE TABLE p (id int PRIMARY KEY, x int) PARTITION BY RANGE (id);
    CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
    CREATE INDEX p_x ON p (x);
    CREATE INDEX p1_own ON p1 (x, id);
  )sql");
  const std::string before = Snapshot();
  // The parent's indexes and the partitions of them stay; the partition's own index is deferred.
  auto deferred = DeferAndLoad({{"public", "p"}, {"public", "p1"}}, "");
  ASSERT_EQ(deferred.size(), 1u);
  EXPECT_EQ(deferred[0].index_name, "p1_own");
  std::atomic<bool> stop{false};
  ASSERT_TRUE(Rebuild(1, stop).ok());
  EXPECT_EQ(Snapshot(), before);

  auto c = ConnectSubscriber();
  auto missing = sync::DeferIndexes(c, "main", {"public", "nope"});
  EXPECT_EQ(missing.status().kind(), Status::Kind::kPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("public.nope"));
}

}  // namespace
}  // namespace lorry::test
