#include "sync/table_copy.h"

#include <gtest/gtest.h>

namespace lorry::sync {
namespace {

TEST(SplitByBlocks, ContiguousAndOpenEnded) {
  auto r = SplitByBlocks(100, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], "ctid >= '(0,0)'::tid AND ctid < '(25,0)'::tid");
  EXPECT_EQ(r[1], "ctid >= '(25,0)'::tid AND ctid < '(50,0)'::tid");
  EXPECT_EQ(r[3], "ctid >= '(75,0)'::tid");
}

TEST(SplitByBlocks, FewerBlocksThanRanges) {
  auto r = SplitByBlocks(2, 8);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1], "ctid >= '(1,0)'::tid");
  auto one = SplitByBlocks(0, 8);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], "ctid >= '(0,0)'::tid");
}

TEST(SplitByKey, OpenAtBothEnds) {
  auto r = SplitByKey("\"id\"", 1, 1000, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], "\"id\" < 250");
  EXPECT_EQ(r[1], "\"id\" >= 250 AND \"id\" < 499");
  EXPECT_EQ(r[2], "\"id\" >= 499 AND \"id\" < 748");
  EXPECT_EQ(r[3], "\"id\" >= 748");
}

TEST(SplitByKey, ExtremesDoNotOverflow) {
  auto r = SplitByKey("k", INT64_MIN, INT64_MAX, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], "k < -1");
  EXPECT_EQ(r[1], "k >= -1");
  EXPECT_EQ(SplitByKey("k", 5, 5, 4), std::vector<std::string>{"true"});
}

}  // namespace
}  // namespace lorry::sync
