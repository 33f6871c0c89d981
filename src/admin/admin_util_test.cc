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
}  // namespace lorry::admin
