#include "replication/stream_spool.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
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
    fs::permissions(parent_, fs::perms(0755));
  }
  std::unique_ptr<StreamSpool> Make(int64_t max_bytes = 0) {
    auto spool = StreamSpool::Create({parent_, max_bytes});
    EXPECT_TRUE(spool.ok()) << spool.status().message();
    return spool.ok() ? std::move(spool.value()) : nullptr;
  }
  static std::string Read(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
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
  auto made = Make();
  ASSERT_TRUE(made);
  StreamSpool& spool = *made;
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
  auto made = Make();
  ASSERT_TRUE(made);
  StreamSpool& spool = *made;
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
  auto made = Make();
  ASSERT_TRUE(made);
  StreamSpool& spool = *made;
  ASSERT_TRUE(spool.Append(5, 5, "x").ok());
  ASSERT_TRUE(fs::exists(spool.dir()));
  EXPECT_FALSE(fs::is_empty(spool.dir()));
  ASSERT_TRUE(spool.Abort(5, 5).ok());
  EXPECT_TRUE(fs::is_empty(spool.dir()));
  EXPECT_TRUE(ReplayAll(spool, 5).empty());
}

TEST_F(StreamSpoolTest, ReplayStopsAtTheFirstErrorAndStillForgets) {
  auto made = Make();
  ASSERT_TRUE(made);
  StreamSpool& spool = *made;
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
  fs::path stale = parent_ / "lorry-spool-999999999-abcdef";
  fs::create_directories(stale);
  fs::path link = parent_ / "lorry-spool-999999998-abcdef";  // a link is never followed nor removed
  fs::create_directory_symlink(stale.parent_path(), link);
  {
    auto spool = Make();
    ASSERT_TRUE(spool);
    EXPECT_FALSE(fs::exists(stale));
    ASSERT_TRUE(spool->Append(1, 1, "x").ok());
  }
  EXPECT_TRUE(fs::is_symlink(link));
  fs::remove(link);
  EXPECT_TRUE(fs::is_empty(parent_));  // its own directory goes with it
}

// What another local user could plant beforehand is never written through:
// a directory under the name lorry once used (lorry-spool-<pid>) holding a
// link named like the next spool file.
TEST_F(StreamSpoolTest, ADirectoryMadeBeforehandIsNotUsed) {
  fs::path victim = parent_ / "victim";
  std::ofstream(victim) << "precious";
  fs::path planted = parent_ / ("lorry-spool-" + std::to_string(::getpid()));
  fs::create_directories(planted);
  fs::create_symlink(victim, planted / "5.spool");
  auto spool = Make();
  ASSERT_TRUE(spool);
  ASSERT_TRUE(spool->Append(5, 5, "row data").ok());
  EXPECT_NE(spool->dir(), planted);
  EXPECT_EQ(spool->dir().parent_path(), parent_);
  EXPECT_EQ(Read(victim), "precious");
  struct stat st;
  ASSERT_EQ(lstat(spool->dir().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, geteuid());
  ASSERT_EQ(lstat((spool->dir() / "5.spool").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// A name planted inside the spool's own directory (a race, or the same
// user) is refused, never followed nor reused.
TEST_F(StreamSpoolTest, APlantedLinkOrFileIsRefused) {
  fs::path victim = parent_ / "victim";
  std::ofstream(victim) << "precious";
  auto spool = Make();
  ASSERT_TRUE(spool);
  fs::create_symlink(victim, spool->dir() / "5.spool");
  Status s = spool->Append(5, 5, "row data");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find((spool->dir() / "5.spool").string()), std::string::npos) << s.message();
  EXPECT_EQ(Read(victim), "precious");
  EXPECT_FALSE(spool->full());
  std::ofstream(spool->dir() / "6.spool") << "old";
  EXPECT_FALSE(spool->Append(6, 6, "row data").ok());
  EXPECT_EQ(Read(spool->dir() / "6.spool"), "old");
  EXPECT_EQ(spool->open_transactions(), 0u);
}

TEST_F(StreamSpoolTest, AParentOthersCouldRewriteIsRefused) {
  fs::permissions(parent_, fs::perms(0777));
  auto spool = StreamSpool::Create({parent_, 0});
  ASSERT_FALSE(spool.ok());
  EXPECT_EQ(spool.status().kind(), Status::Kind::kPrecondition);
  EXPECT_NE(spool.status().message().find("no sticky bit"), std::string::npos) << spool.status().message();
  EXPECT_NE(spool.status().message().find("spool_dir"), std::string::npos) << spool.status().message();
  fs::permissions(parent_, fs::perms(01777));  // as /tmp
  EXPECT_TRUE(StreamSpool::Create({parent_, 0}).ok());
  auto missing = StreamSpool::Create({parent_ / "nowhere", 0});
  EXPECT_FALSE(missing.ok());
  if (geteuid() != 0) return;
  fs::permissions(parent_, fs::perms(0755));
  ASSERT_EQ(chown(parent_.c_str(), 65534, 65534), 0);
  auto foreign = StreamSpool::Create({parent_, 0});
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.status().message().find("belongs to another user (uid 65534)"), std::string::npos)
      << foreign.status().message();
}

// Row data in the spool is not for other local users to read.
TEST_F(StreamSpoolTest, AnotherUserCannotReadTheSpool) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as another user (nobody)";
  auto spool = Make();
  ASSERT_TRUE(spool);
  ASSERT_TRUE(spool->Append(6, 6, std::string(100000, 's')).ok());  // past stdio's buffer: on disk
  fs::path file = spool->dir() / "6.spool";
  ASSERT_GT(fs::file_size(file), 0u);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    bool file_refused = open(file.c_str(), O_RDONLY) < 0 && errno == EACCES;
    bool dir_refused = open(spool->dir().c_str(), O_RDONLY | O_DIRECTORY) < 0 && errno == EACCES;
    _exit(file_refused && dir_refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "user nobody could read " << file;
}

TEST_F(StreamSpoolTest, TheSizeLimitEndsAnAppendAsFull) {
  auto spool = Make(/*max_bytes=*/100);
  ASSERT_TRUE(spool);
  ASSERT_TRUE(spool->Append(5, 5, std::string(60, 'a')).ok());
  Status s = spool->Append(7, 7, std::string(60, 'b'));
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(spool->full());
  EXPECT_NE(s.message().find("spool_max_size = 100 bytes"), std::string::npos) << s.message();
  EXPECT_EQ(spool->bytes(), 64);
}

// A full disk (here: the file size limit, EFBIG) is told apart from other
// errors, so that the caller asks for the transaction again instead.
TEST_F(StreamSpoolTest, AFullDiskEndsAnAppendAsFull) {
  auto spool = Make();
  ASSERT_TRUE(spool);
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  Status s;
  for (int i = 0; i < 100 && s.ok(); ++i) s = spool->Append(5, 5, std::string(1000, 'x'));
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(spool->full());
  EXPECT_NE(s.message().find("set [run] spool_dir to a larger disk"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lorry::replication
