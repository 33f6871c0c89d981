#include "admin/admin_util.h"

#include <gtest/gtest.h>

namespace lorry::admin {
namespace {

TEST(ShellQuote, LeavesPlainWordsAndQuotesTheRest) {
  EXPECT_EQ(ShellQuote("public.orders"), "public.orders");
  EXPECT_EQ(ShellQuote("\"My Schema\".t"), "'\"My Schema\".t'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a$b"), "'a$b'");
}

TEST(HumanBytes, PicksAUnit) {
  EXPECT_EQ(HumanBytes(0), "0 bytes");
  EXPECT_EQ(HumanBytes(-5), "0 bytes");
  EXPECT_EQ(HumanBytes(10239), "10239 bytes");
  EXPECT_EQ(HumanBytes(10240), "10.0 kB");
  EXPECT_EQ(HumanBytes(3 * 1024 * 1024 / 2), "1.5 MB");
  EXPECT_EQ(HumanBytes(int64_t{5} << 40), "5.0 TB");
}

}  // namespace
TEST(NameMatches, LikeAndGlobOnSchemaAndTable) {
  pg::QualifiedName t{"public", "tmp_orders"};
  EXPECT_TRUE(NameMatches("public.tmp_%", t));
  EXPECT_TRUE(NameMatches("public.tmp_*", t));
  EXPECT_TRUE(NameMatches("*.tmp?orders", t));
  EXPECT_TRUE(NameMatches("tmp_orders", t));          // unqualified: any schema
  EXPECT_TRUE(NameMatches("%", t));
  EXPECT_FALSE(NameMatches("public.tmp", t));         // the whole name
  EXPECT_FALSE(NameMatches("audit.*", t));
  EXPECT_FALSE(NameMatches("public.TMP_%", t));       // case-sensitive
  EXPECT_TRUE(NameMatches("public.tmp\\_orders", t));  // escaped _ is literal
  EXPECT_FALSE(NameMatches("public.tmp\\_orders", {"public", "tmpxorders"}));
  EXPECT_TRUE(NameMatches("a\\.b.c", {"a.b", "c"}));   // an escaped dot is part of the schema
  EXPECT_TRUE(NameMatches("p%a%b", {"s", "pxxaybzzb"}));
  EXPECT_FALSE(NameMatches("p%a%b", {"s", "pxxaybzzc"}));
}

}  // namespace lorry::admin
