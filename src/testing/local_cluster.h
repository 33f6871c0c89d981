// LocalCluster: a throwaway PostgreSQL server for integration tests and for
// `lorry demo`.
//
// Start() runs initdb into a fresh mkdtemp folder ($TMPDIR or /tmp), writes a
// small configuration (127.0.0.1 only, a free port, logical WAL by default,
// trust for the postgres superuser and scram-sha-256 for everyone else) and
// starts the server with `pg_ctl -w`, then waits until PQping answers.
//
// Invariants:
// - A LocalCluster owns its folder and every process started in it: the
//   destructor always stops the server (immediate, then SIGKILL of the whole
//   server) and removes the folder, whatever state it was left in.
// - Every live cluster is in a process-wide registry, so StopAllLocalClusters()
//   (e.g. after Ctrl-C in `lorry demo`, or at exit) leaves nothing behind.
// - If the process dies without destroying a cluster (SIGKILL, a crash, a test
//   timeout), a small watchdog child notices and stops and removes it.
// - The server never runs as root: when geteuid() == 0 the PostgreSQL programs
//   run as the `postgres` system user, which owns the folder.
// - Nothing is printed: program output goes to files in the folder and is
//   quoted in error messages (with the server log tail) when something fails.
// - Every wait has a timeout (starting takes at most kStartTimeout).
//
// Thread safety: the methods of one cluster may be called from several threads
// (they serialize); StopAllLocalClusters() may be called from any thread, but
// not from a signal handler.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace lorry::testing {

class LocalCluster;

struct LocalClusterOptions {
  std::string name = "pg";            // used in the temp folder name and in errors
  std::string bindir;                 // empty -> $PG_BINDIR, else /usr/lib/postgresql/15/bin
  std::vector<std::string> settings;  // extra postgresql.conf lines, e.g. "work_mem = '8MB'"
  bool logical = true;                // wal_level=logical, max_replication_slots=10, max_wal_senders=10
  // A physical standby of this running cluster (PostgreSQL 15+) instead of
  // initdb: a copy of its data folder between pg_backup_start and
  // pg_backup_stop, with standby.signal and primary_conninfo. `settings`
  // add the rest (primary_slot_name, hot_standby_feedback, ...).
  const LocalCluster* standby_of = nullptr;
};

class LocalCluster {
 public:
  // Creates, configures and starts a new cluster. On failure nothing is left
  // behind and the error quotes the program output and the server log tail.
  static Result<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options);

  // Stops the server (immediate) and removes the folder, always.
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  const std::string& datadir() const { return datadir_; }
  const std::string& basedir() const { return basedir_; }  // the temp folder
  const std::string& name() const { return options_.name; }
  // "host=127.0.0.1 port=N dbname=... user=..." (values quoted when needed).
  std::string Conninfo(std::string_view dbname = "postgres", std::string_view user = "postgres") const;
  int major_version() const { return major_version_; }  // e.g. 15

  // pg_ctl stop -m mode (smart, fast or immediate); waits until stopped.
  Status Stop(std::string_view mode = "fast");
  // Starts the stopped (or killed) server again on the same port.
  Status StartAgain();
  Status Restart();  // Stop("fast") then StartAgain()
  // Simulates a crash: SIGKILLs the postmaster and all its children, waits for
  // them to be gone and releases their shared memory; the data is left as is.
  Status Kill9();
  // Appends a line to postgresql.conf; it takes effect at the next (re)start
  // (or reload).
  Status SetSetting(std::string_view line);
  // Runs sql (one or more statements) as the postgres superuser.
  Status Execute(std::string_view sql, std::string_view dbname = "postgres");
  // The last `bytes` bytes of the server log, for failure messages.
  std::string LogTail(size_t bytes = 4000) const;

  // Stops the server and removes the folder; later calls do nothing and the
  // cluster can no longer be started. Called by the destructor and by
  // StopAllLocalClusters().
  void Destroy();

 private:
  explicit LocalCluster(LocalClusterOptions options);

  Status Init();                                 // folder, initdb, configuration
  Status CopyFromPrimary();                      // instead of initdb: options_.standby_of
  Status StartServer(bool may_change_port);      // REQUIRES: mu_ held
  Status StopServer(std::string_view mode);      // REQUIRES: mu_ held
  void KillServer();                             // REQUIRES: mu_ held
  Status WriteConfig();
  Status WritePortConfig();
  // Runs a PostgreSQL program from bindir_ (as the postgres user when root).
  Status RunProgram(const std::string& program, const std::vector<std::string>& args, double timeout_seconds,
                    std::string* output);
  Status Annotate(const Status& status) const;  // adds the cluster name and log tail

  LocalClusterOptions options_;
  std::string bindir_;
  std::string host_ = "127.0.0.1";
  std::string basedir_;  // mkdtemp folder; removed by Destroy()
  std::string datadir_;  // basedir_/data
  std::string logfile_;  // basedir_/server.log
  int port_ = 0;
  int major_version_ = 0;

  pid_t watchdog_ = -1;    // cleans up if this process dies without Destroy()
  int watchdog_fd_ = -1;   // closing it releases the watchdog

  mutable std::mutex mu_;  // serializes start/stop/destroy
  bool running_ = false;
  bool destroyed_ = false;
};

// Picks a free TCP port on 127.0.0.1 (binds to port 0). Ports used by live
// clusters of this process are never returned.
Result<int> FindFreePort();

// Stops and removes every live LocalCluster of this process (their objects stay
// valid, but are destroyed: start/stop calls fail). Call it after a signal has
// been noted, from a normal thread; it is also run at exit.
void StopAllLocalClusters();

}  // namespace lorry::testing
