#include "catalog/publications.h"

#include <gtest/gtest.h>

namespace lorry::catalog {
namespace {

TEST(Ops, ParseAndName) {
  auto names = SubscriptionNames::For("main");
  auto ops = ParseOps("update, INSERT");
  ASSERT_TRUE(ops.ok());
  EXPECT_EQ(ops->Letters(), "iu");
  EXPECT_EQ(ops->PublishList(), "insert, update");
  EXPECT_TRUE(ops->needs_identity());
  EXPECT_EQ(PublicationFor(names, *ops, false), "lorry_main_ops_iu");
  EXPECT_EQ(PublicationFor(names, Ops{}, false), "lorry_main");
  EXPECT_EQ(PublicationFor(names, *ops, true), "lorry_main_insert_only");
  auto all = ParseOps("truncate,delete,update,insert");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->all());
  auto ins = ParseOps("insert");
  ASSERT_TRUE(ins.ok());
  EXPECT_FALSE(ins->needs_identity());
}

TEST(Ops, RefusesUnknownOrEmpty) {
  auto bad = ParseOps("insert,upsert");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().kind(), Status::Kind::kUsage);
  EXPECT_NE(bad.status().message().find("upsert"), std::string::npos);
  EXPECT_FALSE(ParseOps("").ok());
  EXPECT_FALSE(ParseOps("insert,").ok());
}

TEST(RowFilterSupport, NeedsFifteen) {
  EXPECT_TRUE(RequireRowFilterSupport(150004, "--where").ok());
  EXPECT_TRUE(RequireRowFilterSupport(180000, "--where").ok());
  Status s = RequireRowFilterSupport(140011, "--where");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.kind(), Status::Kind::kPrecondition);
  EXPECT_NE(s.message().find("PostgreSQL 15"), std::string::npos);
  EXPECT_NE(s.message().find("14.11"), std::string::npos);
}

TEST(VarAttnos, FromNodeTree) {
  std::string tree =
      "{OPEXPR :opno 521 :args ({VAR :varno 1 :varattno 3 :vartype 23} {CONST :consttype 23}) :location 7} "
      "{VAR :varno 1 :varattno 12 :vartype 25}";
  EXPECT_EQ(VarAttnos(tree), (std::vector<int>{3, 12}));
  EXPECT_TRUE(VarAttnos("{CONST :consttype 16}").empty());
}

TEST(ParseColumnList, QuotingAndFolding) {
  auto cols = ParseColumnList("id, Name,\"Odd, Col\"");
  ASSERT_TRUE(cols.ok()) << cols.status().message();
  EXPECT_EQ(*cols, (std::vector<std::string>{"id", "name", "Odd, Col"}));
  EXPECT_FALSE(ParseColumnList("a,,b").ok());
  EXPECT_FALSE(ParseColumnList("s.a").ok());
}

}  // namespace
}  // namespace lorry::catalog
