#include "replication/stream_spool.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lorry::replication {
namespace {

namespace fs = std::filesystem;

class StreamSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parent_ = fs::temp_directory_path() / ("lorry-spool-test-" + std::to_string(::getpid()));
    fs::create_directories(parent_);
  }
  void TearDown() override { fs::remove_all(parent_); }

  static std::vector<std::string> ReplayAll(StreamSpool& spool, Xid xid) {
    std::vector<std::string> out;
    EXPECT_TRUE(spool.Replay(xid, [&](std::string_view m) {
      out.emplace_back(m);
      return Status::Ok();
    }).ok());
    return out;
  }
  fs::path parent_;
};

TEST_F(StreamSpoolTest, ReplaysInOrderAndForgets) {
  StreamSpool spool(parent_);
  ASSERT_TRUE(spool.Append(7, 7, "a").ok());
  ASSERT_TRUE(spool.Append(9, 9, "other").ok());
  ASSERT_TRUE(spool.Append(7, 7, std::string("b\0c", 3)).ok());
  ASSERT_TRUE(spool.Append(7, 7, "").ok());
  EXPECT_EQ(spool.open_transactions(), 2u);
  EXPECT_EQ(ReplayAll(spool, 7), (std::vector<std::string>{"a", std::string("b\0c", 3), ""}));
  EXPECT_EQ(spool.open_transactions(), 1u);
  EXPECT_TRUE(ReplayAll(spool, 7).empty());
  EXPECT_EQ(ReplayAll(spool, 9), (std::vector<std::string>{"other"}));
  EXPECT_EQ(spool.bytes(), 0);
}

TEST_F(StreamSpoolTest, SubtransactionAbortDropsItsChangesAndLaterOnes) {
  StreamSpool spool(parent_);
  ASSERT_TRUE(spool.Append(10, 10, "top1").ok());
  ASSERT_TRUE(spool.Append(10, 11, "sub11").ok());
  ASSERT_TRUE(spool.Append(10, 12, "sub12 nested").ok());
  ASSERT_TRUE(spool.Append(10, 11, "sub11 again").ok());
  ASSERT_TRUE(spool.Abort(10, 11).ok());
  ASSERT_TRUE(spool.Append(10, 13, "sub13").ok());
  ASSERT_TRUE(spool.Abort(10, 99).ok());  // unknown subtransaction: nothing to drop
  ASSERT_TRUE(spool.Append(10, 10, "top2").ok());
  EXPECT_EQ(ReplayAll(spool, 10), (std::vector<std::string>{"top1", "sub13", "top2"}));
}

TEST_F(StreamSpoolTest, WholeAbortRemovesTheFile) {
  StreamSpool spool(parent_);
  ASSERT_TRUE(spool.Append(5, 5, "x").ok());
  ASSERT_TRUE(fs::exists(spool.dir()));
  EXPECT_FALSE(fs::is_empty(spool.dir()));
  ASSERT_TRUE(spool.Abort(5, 5).ok());
  EXPECT_TRUE(fs::is_empty(spool.dir()));
  EXPECT_TRUE(ReplayAll(spool, 5).empty());
}

TEST_F(StreamSpoolTest, ReplayStopsAtTheFirstErrorAndStillForgets) {
  StreamSpool spool(parent_);
  ASSERT_TRUE(spool.Append(5, 5, "1").ok());
  ASSERT_TRUE(spool.Append(5, 5, "2").ok());
  int seen = 0;
  Status s = spool.Replay(5, [&](std::string_view) {
    ++seen;
    return Status::Server("boom");
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(spool.open_transactions(), 0u);
}

TEST_F(StreamSpoolTest, DirectoriesOfDeadProcessesAreRemoved) {
  fs::path stale = parent_ / "lorry-spool-999999999";
  fs::create_directories(stale);
  {
    StreamSpool spool(parent_);
    EXPECT_FALSE(fs::exists(stale));
    ASSERT_TRUE(spool.Append(1, 1, "x").ok());
  }
  EXPECT_TRUE(fs::is_empty(parent_));  // its own directory goes with it
}

}  // namespace
}  // namespace lorry::replication
