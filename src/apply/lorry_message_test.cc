#include "apply/lorry_message.h"

#include <gtest/gtest.h>

namespace lorry::apply {
namespace {

TEST(LorryMessage, RoundTrip) {
  LorryMessage m;
  m.kind = LorryMessage::Kind::kExecute;
  m.for_subscriptions = {"main", "other"};
  m.sql = "ALTER TABLE t ADD COLUMN \"x\" int; -- ünïcode '\n";
  m.search_path = "\"$user\", public";
  m.add = {{"public", "new table"}};
  auto d = DecodeLorryMessage(EncodeLorryMessage(m));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->sql, m.sql);
  EXPECT_EQ(d->search_path, m.search_path);
  EXPECT_TRUE(d->IsFor("main"));
  EXPECT_TRUE(d->IsFor("other"));
  EXPECT_FALSE(d->IsFor("mai"));
  ASSERT_EQ(d->add.size(), 1u);
  EXPECT_EQ(d->add[0].name, "new table");
  EXPECT_TRUE(d->skips_rest_of_transaction());
}

TEST(LorryMessage, DdlFromTheEventTrigger) {
  // As built by the provider's trigger function (json_build_object).
  auto d = DecodeLorryMessage(R"j({"lorry" : 1, "kind" : "ddl", "for" : ["main"], "sql" : "CREATE INDEX ON t (a)", )j"
                              R"j("search_path" : "public"})j");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->kind, LorryMessage::Kind::kDdl);
  EXPECT_FALSE(d->skips_rest_of_transaction());
  EXPECT_TRUE(d->add.empty());
}

TEST(LorryMessage, RefusesWhatItDoesNotKnow) {
  EXPECT_EQ(DecodeLorryMessage("not json").status().kind(), Status::Kind::kProtocol);
  EXPECT_FALSE(DecodeLorryMessage(R"({"lorry": 2, "kind": "ddl", "sql": ""})").ok());
  EXPECT_FALSE(DecodeLorryMessage(R"({"lorry": 1, "kind": "drop", "sql": ""})").ok());
  EXPECT_FALSE(DecodeLorryMessage(R"({"lorry": 1, "kind": "ddl"})").ok());
}

TEST(MessageSupport, NeedsFourteen) {
  EXPECT_TRUE(RequireMessageSupport(140000, "lorry execute").ok());
  Status s = RequireMessageSupport(130015, "lorry execute");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.kind(), Status::Kind::kPrecondition);
  EXPECT_NE(s.message().find("PostgreSQL 14"), std::string::npos);
  EXPECT_NE(s.message().find("13.15"), std::string::npos);
}

}  // namespace
TEST(IsPartitionDdl, FindsPartitionCommandsOnly) {
  EXPECT_TRUE(IsPartitionDdl("CREATE TABLE p5 PARTITION OF payment FOR VALUES FROM ('2024-05-01') TO ('2024-06-01')"));
  EXPECT_TRUE(IsPartitionDdl("alter table payment attach  partition p5 for values in (5)"));
  EXPECT_TRUE(IsPartitionDdl("ALTER TABLE payment DETACH PARTITION p5 CONCURRENTLY"));
  EXPECT_FALSE(IsPartitionDdl("ALTER TABLE payment ADD COLUMN partition_key int"));
  EXPECT_FALSE(IsPartitionDdl("CREATE TABLE t (id int) PARTITION BY RANGE (id)"));
}

}  // namespace lorry::apply
