// Shared fixture for integration tests: a provider and a subscriber cluster,
// a way to run the `lorry` binary, and helpers to read both databases.
//
// The clusters are started once per test suite (SetUpTestSuite) to keep the
// suite fast; each test uses its own databases (a fresh name per test), so
// tests do not see each other's tables, slots or publications.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pg/connection.h"
#include "testing/local_cluster.h"

namespace lorry::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  std::string all() const { return out + err; }
};

// Runs the lorry binary with argv (no shell), capturing stdout and stderr.
CommandResult RunLorry(const std::vector<std::string>& args, double timeout_seconds = 120);

// A `lorry` child process running in the background (for `run`).
class LorryProcess {
 public:
  explicit LorryProcess(const std::vector<std::string>& args);
  ~LorryProcess();  // SIGTERM, then SIGKILL after 10 s
  pid_t pid() const { return pid_; }
  void Kill9();
  // SIGTERM and wait; returns the exit code (or 128+signal).
  int Terminate(double timeout_seconds = 30);
  bool Running();
  std::string Log() const;  // everything it wrote to stdout/stderr so far

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  int status_ = -1;
};

class TwoClusters : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;     // creates databases named after the test on both sides
  void TearDown() override;  // drops slots left by the test, then the databases

  // Conninfo of this test's database on either side.
  std::string Provider() const;
  std::string Subscriber() const;
  // --provider X --subscriber Y --name main, followed by args.
  std::vector<std::string> Args(std::vector<std::string> args) const;

  pg::PgConn ConnectProvider() const;
  pg::PgConn ConnectSubscriber() const;
  // Runs SQL on a side; fails the test on error.
  void ProviderSql(const std::string& sql) const;
  void SubscriberSql(const std::string& sql) const;
  void BothSql(const std::string& sql) const;
  std::string ProviderValue(const std::string& sql) const;
  std::string SubscriberValue(const std::string& sql) const;
  // Rows of `SELECT * FROM table ORDER BY <all columns as text>` as one text, on each side.
  std::string Dump(bool provider, const std::string& quoted_table) const;

  // `lorry init`, then `lorry add` with add_args; fails the test on error.
  void InitAndAdd(const std::vector<std::string>& add_args);
  // `lorry wait` until caught up; fails the test (with run's log) otherwise.
  void Wait(LorryProcess* run, double timeout = 120);
  void ExpectSameContent(const std::string& quoted_table) const;
  // `lorry compare` (it needs `run` running): exit 0 and "public.T: ok" for
  // each of `tables` (unquoted names in public); on failure the row-by-row
  // dump comparison too, and run's log. `args`: the compare command line
  // without tables (e.g. with a --config); empty: Args({"compare"}).
  void ExpectCompareClean(const std::vector<std::string>& tables, const LorryProcess* run,
                          std::vector<std::string> args = {}) const;

  // Writes a lorry.toml with `toml` for this test (removed at TearDown);
  // returns its path, for -c.
  std::string ConfigFile(const std::string& toml);

  static testing::LocalCluster* provider_cluster();
  static testing::LocalCluster* subscriber_cluster();
  std::string dbname_;

 private:
  static std::unique_ptr<testing::LocalCluster> provider_;
  static std::unique_ptr<testing::LocalCluster> subscriber_;
  std::vector<std::string> config_files_;
};

// The spool directories of the lorry process `pid` under `parent`
// (lorry-spool-<pid>-XXXXXX, see replication/stream_spool.h).
std::vector<std::string> SpoolDirsOf(pid_t pid, const std::string& parent);
// Its spool directory under the temp directory once it holds a file, else "".
std::string SpoolDirWithData(pid_t pid);

// Polls `pred` every 100 ms until true or timeout; returns the last result.
template <typename Pred>
bool Eventually(Pred pred, double timeout_seconds = 60) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

}  // namespace lorry::test
