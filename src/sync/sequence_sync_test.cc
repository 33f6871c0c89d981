#include "sync/sequence_sync.h"

#include <limits>

#include <gtest/gtest.h>

namespace lorry::sync {
namespace {

TEST(SequenceAhead, Ascending) {
  EXPECT_TRUE(SequenceAhead(1, false, 5, true, 1));   // fresh subscriber, provider used up to 5
  EXPECT_FALSE(SequenceAhead(5, true, 5, true, 1));   // equal
  EXPECT_FALSE(SequenceAhead(9, true, 5, true, 1));   // subscriber ahead: never backwards
}

TEST(SequenceAhead, CalledMatters) {
  EXPECT_FALSE(SequenceAhead(5, true, 6, false, 1));  // both return 6 next
  EXPECT_TRUE(SequenceAhead(5, false, 5, true, 1));   // 5 next vs 6 next
}

TEST(SequenceAhead, DescendingAndExtremes) {
  EXPECT_TRUE(SequenceAhead(-1, true, -10, true, -1));
  EXPECT_FALSE(SequenceAhead(-10, true, -1, true, -1));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_TRUE(SequenceAhead(kMax - 1, true, kMax, true, 1));
  EXPECT_FALSE(SequenceAhead(kMax, true, kMax - 1, true, 1));
}

}  // namespace
}  // namespace lorry::sync
