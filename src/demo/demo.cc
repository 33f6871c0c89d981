// `lorry demo`: two throwaway servers, live replication between them, checked.
//
// The steps, each one a method of Demo: start both servers (in parallel),
// create the schema on both and load the provider, `init` and `add`, start
// `run` on a thread of this process, wait until the slot exists, write from
// two clients for the requested time while printing a status line every few
// seconds, `wait`, compare every table's content, print a summary.
//
// Invariants:
// - Whatever happens (an error, Ctrl-C, SIGTERM), the threads are stopped and
//   both servers and their folders are removed before RunDemo returns
//   (Demo::Cleanup, also run by the destructor); LocalCluster's exit hook is
//   the last resort.
// - The signal handlers only set flags; every loop and wait here has a
//   timeout and checks them. A thread stuck in a server call is released by
//   destroying the servers before it is joined.
// - The slot is created before the workload starts: under continuous writes
//   PostgreSQL may need several running-xacts records (one per 15 s) to find
//   a consistent point, which would stall the demo's first seconds.
#include "demo/demo.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"  // HumanBytes
#include "common/log.h"
#include "daemon/daemon.h"
#include "demo/monitor.h"
#include "demo/verify.h"
#include "demo/workload.h"
#include "testing/local_cluster.h"

namespace lorry::demo {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kClients = 2;
// Transactions per second of all clients together: a steady load that the
// applier keeps up with, so that the lag shown stays meaningful.
constexpr double kRate = 1000;
constexpr auto kStatusEvery = std::chrono::seconds(3);
constexpr double kWaitTimeoutSeconds = 120;
constexpr auto kSlotTimeout = std::chrono::seconds(90);
constexpr auto kThreadStopTimeout = std::chrono::seconds(15);

std::atomic<bool> g_interrupted{false};  // SIGINT or SIGTERM was received
std::atomic<bool> g_stop{false};         // the daemon's stop flag: interrupted, or the demo is done

extern "C" void OnDemoSignal(int) {
  if (!g_interrupted.exchange(true)) {
    static const char kMsg[] = "\ninterrupted: stopping and removing the demo servers...\n";
    ssize_t n = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)n;
  }
  g_stop.store(true);
}

// Installs the demo's SIGINT/SIGTERM handlers; restores the previous ones.
class SignalGuard {
 public:
  SignalGuard() {
    g_interrupted.store(false);
    g_stop.store(false);
    struct sigaction sa {};
    sa.sa_handler = OnDemoSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGPIPE, &old_pipe_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_pipe_ {};
};

// The demo's output is for people: only warnings and errors from the log,
// unless a more detailed level than the default was asked for.
class LogLevelGuard {
 public:
  LogLevelGuard() : old_(spdlog::get_level()) {
    if (old_ == spdlog::level::info) spdlog::set_level(spdlog::level::warn);
  }
  ~LogLevelGuard() { spdlog::set_level(old_); }
  LogLevelGuard(const LogLevelGuard&) = delete;
  LogLevelGuard& operator=(const LogLevelGuard&) = delete;

 private:
  spdlog::level::level_enum old_;
};

Status InterruptedStatus() {
  return Status::Cancelled("demo interrupted; its servers and temporary folders are removed");
}

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sleeps up to `d` in small steps; false if interrupted meanwhile.
bool SleepUnlessInterrupted(Clock::duration d) {
  auto until = Clock::now() + d;
  while (Clock::now() < until) {
    if (g_interrupted.load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !g_interrupted.load();
}

// Prints `text` indented, without the advice to start `lorry run` (the demo
// runs it itself).
void PrintIndented(std::ostream& out, const std::string& text) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("start `lorry run`", 0) != 0) out << "  " << line << "\n";
}

class Demo {
 public:
  Demo(const DemoOptions& options, std::ostream& out) : options_(options), out_(out) {}
  ~Demo() { Cleanup(); }
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;

  Status Run();
  // Stops the threads and removes both servers; prints what it does once.
  void Cleanup();

 private:
  Status StartServers();
  Status CreateData();
  Status SetUpReplication();
  Status StartDaemon();
  Status RunWorkload();
  void NoteCopyDone();  // prints a line once every table is ready
  Status WaitCaughtUp();
  Status StopDaemon();  // and reads its final counts
  Status Verify();
  void PrintSummary();

  void PrintStatusLine(const Sample& s);
  Status CheckThreads();  // a failed daemon or client ends the demo
  Status Interrupted() const;

  const DemoOptions& options_;
  std::ostream& out_;

  std::unique_ptr<testing::LocalCluster> provider_;
  std::unique_ptr<testing::LocalCluster> subscriber_;
  Config config_;
  daemon::RunOptions run_options_;
  DataShape shape_;

  // Threads: the daemon and the clients. `running_` counts those not done.
  std::vector<std::thread> threads_;
  std::atomic<int> running_{0};
  std::atomic<int> clients_running_{0};
  std::mutex mu_;
  Status daemon_status_;  // guarded by mu_
  Status client_status_;  // guarded by mu_: the first client error
  std::atomic<bool> daemon_done_{false};
  std::atomic<bool> workload_stop_{false};
  WorkloadCounters counters_;

  Monitor monitor_{config_};

  // Results for the summary.
  Clock::time_point slot_created_at_;
  Clock::time_point workload_start_;
  std::optional<double> copy_seconds_;  // from slot creation to every table ready
  double workload_seconds_ = 0;
  double catch_up_seconds_ = 0;
  double apply_seconds_ = 0;
  Sample final_;
  std::vector<TableComparison> comparisons_;
  bool cleaned_up_ = false;
};

Status Demo::Interrupted() const { return InterruptedStatus(); }

Status Demo::Run() {
  out_ << fmt::format("lorry demo: two throwaway PostgreSQL servers, {} writing clients for {} s, then a check that "
                      "both sides hold the same rows\n\n",
                      kClients, options_.seconds);
  LORRY_RETURN_IF_ERROR(StartServers());
  LORRY_RETURN_IF_ERROR(CreateData());
  LORRY_RETURN_IF_ERROR(SetUpReplication());
  LORRY_RETURN_IF_ERROR(StartDaemon());
  LORRY_RETURN_IF_ERROR(RunWorkload());
  LORRY_RETURN_IF_ERROR(WaitCaughtUp());
  LORRY_RETURN_IF_ERROR(StopDaemon());
  LORRY_RETURN_IF_ERROR(Verify());
  PrintSummary();
  Cleanup();
  for (const auto& c : comparisons_)
    if (!c.equal())
      return Status::NotTrue("lorry demo: the provider and the subscriber differ (see the verification above)");
  return Status::Ok();
}

Status Demo::StartServers() {
  auto t = Clock::now();
  out_ << "starting the provider and the subscriber servers ... " << std::flush;
  auto start = [](const char* name, bool logical, Result<std::unique_ptr<testing::LocalCluster>>* result) {
    testing::LocalClusterOptions o;
    o.name = name;
    o.logical = logical;
    o.settings = {"fsync = off"};  // throwaway servers: durability does not matter, speed does
    *result = testing::LocalCluster::Start(std::move(o));
  };
  Result<std::unique_ptr<testing::LocalCluster>> p = Status::Internal("not started");
  Result<std::unique_ptr<testing::LocalCluster>> s = Status::Internal("not started");
  std::thread tp(start, "provider", true, &p);
  std::thread ts(start, "subscriber", false, &s);
  tp.join();
  ts.join();
  if (p.ok()) provider_ = std::move(p).value();
  if (s.ok()) subscriber_ = std::move(s).value();
  if (g_interrupted.load()) return Interrupted();
  if (!p.ok()) return p.status().WithContext("starting the provider server");
  if (!s.ok()) return s.status().WithContext("starting the subscriber server");
  out_ << fmt::format("done ({:.1f} s)\n", SecondsSince(t));
  out_ << fmt::format("  provider    PostgreSQL {} on {}:{}, wal_level=logical, in {}\n", provider_->major_version(),
                      provider_->host(), provider_->port(), provider_->basedir());
  out_ << fmt::format("  subscriber  PostgreSQL {} on {}:{}, in {}\n", subscriber_->major_version(),
                      subscriber_->host(), subscriber_->port(), subscriber_->basedir());

  config_.name = "demo";
  config_.provider = provider_->Conninfo("postgres");
  config_.subscriber = subscriber_->Conninfo("postgres");
  config_.source = "lorry demo";
  return ValidateConfig(config_);
}

Status Demo::CreateData() {
  auto t = Clock::now();
  out_ << fmt::format("creating 5 tables on both and loading the provider ({} branches, {} tellers, {} accounts, "
                      "{} order events) ... ",
                      shape_.branches, shape_.tellers, shape_.accounts, shape_.events)
       << std::flush;
  LORRY_RETURN_IF_ERROR(provider_->Execute(SchemaSql()).WithContext("creating the demo tables on the provider"));
  LORRY_RETURN_IF_ERROR(subscriber_->Execute(SchemaSql()).WithContext("creating the demo tables on the subscriber"));
  if (g_interrupted.load()) return Interrupted();
  LORRY_RETURN_IF_ERROR(provider_->Execute(LoadSql(shape_)).WithContext("loading the demo data on the provider"));
  if (g_interrupted.load()) return Interrupted();
  out_ << fmt::format("done ({:.1f} s)\n", SecondsSince(t));
  return Status::Ok();
}

Status Demo::SetUpReplication() {
  std::ostringstream init_out;
  out_ << "lorry init ... " << std::flush;
  Status s = admin::Init(config_, {}, init_out);
  if (!s.ok()) {
    out_ << "failed:\n";
    PrintIndented(out_, init_out.str());
    return s.WithContext("lorry init");
  }
  out_ << "every check passed, lorry schema installed on the subscriber\n";

  admin::AddOptions history;
  history.tables = {HistoryTable().Quoted()};
  history.insert_only = true;
  out_ << "lorry add --insert-only " << HistoryTable().Display() << "   (it has no primary key)\n";
  std::ostringstream add_out;
  s = admin::Add(config_, history, add_out);
  PrintIndented(out_, add_out.str());
  LORRY_RETURN_IF_ERROR(s.WithContext("lorry add --insert-only"));

  admin::AddOptions all;
  all.all = true;
  out_ << "lorry add --all\n";
  add_out.str("");
  s = admin::Add(config_, all, add_out);
  PrintIndented(out_, add_out.str());
  LORRY_RETURN_IF_ERROR(s.WithContext("lorry add --all"));
  return g_interrupted.load() ? Interrupted() : Status::Ok();
}

Status Demo::StartDaemon() {
  auto t = Clock::now();
  out_ << "lorry run (on a thread of this process): creating the slot ... " << std::flush;
  running_++;
  threads_.emplace_back([this] {
    Status s = daemon::Run(config_, run_options_, g_stop);
    {
      std::lock_guard lock(mu_);
      daemon_status_ = s;
    }
    daemon_done_.store(true);
    running_--;
  });
  while (true) {
    if (g_interrupted.load()) return Interrupted();
    LORRY_RETURN_IF_ERROR(CheckThreads());
    auto sample = monitor_.Take();
    if (sample.ok() && sample->slot_created) break;
    if (Clock::now() - t > kSlotTimeout)
      return Status::Timeout(fmt::format("lorry run did not create its slot within {} s{}", kSlotTimeout.count(),
                                         sample.ok() ? "" : ": " + sample.status().message()));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  slot_created_at_ = Clock::now();
  out_ << fmt::format("done ({:.1f} s); the tables are copied at its snapshot\n", SecondsSince(t));
  return Status::Ok();
}

Status Demo::CheckThreads() {
  std::lock_guard lock(mu_);
  if (!client_status_.ok()) return client_status_;
  if (daemon_done_.load() && !g_stop.load())
    return daemon_status_.ok() ? Status::Internal("lorry run ended by itself") : daemon_status_.WithContext("lorry run");
  return Status::Ok();
}

Status Demo::RunWorkload() {
  out_ << fmt::format("\n{} clients write tpcb-like transactions for {} s while lorry copies and streams:\n", kClients,
                      options_.seconds);
  out_ << fmt::format("  {:>5}  {:<11}  {:>12}  {:>12}  {:>10}\n", "time", "tables", "written", "applied", "lag");
  workload_start_ = Clock::now();
  for (int i = 1; i <= kClients; i++) {
    running_++;
    clients_running_++;
    threads_.emplace_back([this, i] {
      Status s = RunClient(config_.provider, i, shape_, kRate / kClients, workload_stop_, &counters_);
      if (!s.ok()) {
        std::lock_guard lock(mu_);
        if (client_status_.ok()) client_status_ = s;
      }
      clients_running_--;
      running_--;
    });
  }
  auto end = workload_start_ + std::chrono::seconds(options_.seconds);
  auto next_status = workload_start_ + kStatusEvery;
  auto next_copy_check = Clock::now();
  Status result;
  while (Clock::now() < end) {
    if (g_interrupted.load()) {
      result = Interrupted();
      break;
    }
    result = CheckThreads();
    if (!result.ok()) break;
    if (!copy_seconds_ && Clock::now() >= next_copy_check) {
      next_copy_check += std::chrono::milliseconds(250);
      NoteCopyDone();
    }
    if (Clock::now() >= next_status) {
      next_status += kStatusEvery;
      auto sample = monitor_.Take();
      if (sample.ok())
        PrintStatusLine(*sample);
      else
        out_ << "  status unavailable: " << sample.status().message() << "\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  workload_stop_.store(true);
  workload_seconds_ = SecondsSince(workload_start_);
  // The clients end after their current transaction.
  while (clients_running_.load() > 0 && SecondsSince(workload_start_) < workload_seconds_ + 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!result.ok()) return result;
  return CheckThreads();
}

void Demo::NoteCopyDone() {
  auto sample = monitor_.Take();
  if (!sample.ok() || sample->tables == 0 || sample->ready < sample->tables) return;
  copy_seconds_ = SecondsSince(slot_created_at_);
  out_ << fmt::format("  {:>4.0f}s  initial copy done: {} rows of {} tables in {:.1f} s, all tables ready\n",
                      SecondsSince(workload_start_), sample->rows_copied, sample->tables, *copy_seconds_)
       << std::flush;
}

Status Demo::WaitCaughtUp() {
  auto t = Clock::now();
  out_ << fmt::format("workload stopped: {} transactions written; lorry wait ... ", counters_.transactions.load())
       << std::flush;
  // admin::Wait in short slices, so that Ctrl-C and a failed daemon are seen,
  // with a status line now and then while it takes long.
  std::ostringstream sink;
  auto next_status = t + kStatusEvery;
  bool printed = false;
  while (true) {
    if (g_interrupted.load()) return Interrupted();
    LORRY_RETURN_IF_ERROR(CheckThreads());
    Status s = admin::Wait(config_, 1.0, sink);
    if (s.ok()) break;
    if (s.kind() != Status::Kind::kTimeout || SecondsSince(t) >= kWaitTimeoutSeconds) {
      out_ << "\n";
      if (s.kind() != Status::Kind::kTimeout) return s.WithContext("lorry wait");
      // Keep what is behind, not the slice's own timeout.
      std::string behind = s.message();
      if (auto pos = behind.find("still behind:"); pos != std::string::npos) behind = behind.substr(pos);
      return Status::Timeout(fmt::format("lorry wait: not caught up {:g} s after the workload stopped; {}",
                                         kWaitTimeoutSeconds, behind));
    }
    if (Clock::now() >= next_status) {
      next_status += kStatusEvery;
      if (!printed) out_ << "\n";
      printed = true;
      if (auto sample = monitor_.Take(); sample.ok()) PrintStatusLine(*sample);
    }
  }
  if (printed) out_ << "  ";
  catch_up_seconds_ = SecondsSince(t);
  apply_seconds_ = SecondsSince(workload_start_);
  out_ << fmt::format("caught up {:.1f} s after the workload stopped\n", catch_up_seconds_);

  // The lag once the walsender has confirmed the WAL written since (wait's
  // own marker message): a few keepalives at most.
  for (int i = 0; i < 20; i++) {
    auto sample = monitor_.Take();
    if (sample.ok()) final_ = *sample;
    if (sample.ok() && sample->lag_bytes && *sample->lag_bytes == 0) break;
    if (!SleepUnlessInterrupted(std::chrono::milliseconds(200))) return Interrupted();
  }
  return Status::Ok();
}

Status Demo::StopDaemon() {
  g_stop.store(true);
  auto t = Clock::now();
  while (!daemon_done_.load() && Clock::now() - t < kThreadStopTimeout)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!daemon_done_.load())
    return Status::Internal(fmt::format("lorry run did not stop within {} s of being asked", kThreadStopTimeout.count()));
  {
    std::lock_guard lock(mu_);
    if (!daemon_status_.ok()) return daemon_status_.WithContext("lorry run");
  }
  // Its last heartbeat holds the final counts; the lag was measured before.
  LORRY_ASSIGN_OR_RETURN(auto sample, monitor_.Take());
  auto lag = final_.lag_bytes;
  final_ = sample;
  final_.lag_bytes = lag;
  return g_interrupted.load() ? Interrupted() : Status::Ok();
}

Status Demo::Verify() {
  auto t = Clock::now();
  out_ << "\ncomparing every table on both sides (row count and md5 of all rows in order):\n";
  LORRY_ASSIGN_OR_RETURN(comparisons_, CompareTables(config_.provider, config_.subscriber, DemoTables()));
  if (g_interrupted.load()) return Interrupted();
  size_t width = 0;
  for (const auto& c : comparisons_) width = std::max(width, c.table.Display().size());
  for (const auto& c : comparisons_) {
    if (c.equal())
      out_ << fmt::format("  {:<{}}  {:>8} rows  ok\n", c.table.Display(), width, c.provider_rows);
    else
      out_ << fmt::format("  {:<{}}  FAILED: provider {} rows (md5 {}), subscriber {} rows (md5 {})\n",
                          c.table.Display(), width, c.provider_rows, c.provider_md5, c.subscriber_rows,
                          c.subscriber_md5);
  }
  out_ << fmt::format("  ({:.1f} s)\n", SecondsSince(t));
  return Status::Ok();
}

void Demo::PrintSummary() {
  int64_t written = counters_.transactions.load();
  size_t equal = 0;
  for (const auto& c : comparisons_) equal += c.equal() ? 1 : 0;
  auto line = [&](const char* key, const std::string& value) { out_ << fmt::format("  {:<14}{}\n", key, value); };
  out_ << "\nsummary\n";
  line("initial copy", fmt::format("{} rows in {} tables{}", final_.rows_copied, final_.tables,
                                    copy_seconds_ ? fmt::format(" ({:.1f} s)", *copy_seconds_) : ""));
  line("written", fmt::format("{} transactions in {:.1f} s by {} clients ({:.0f} tx/s)", written, workload_seconds_,
                              kClients, written / std::max(workload_seconds_, 0.001)));
  line("applied", fmt::format("{} transactions, {} row changes ({:.0f} tx/s)", final_.xacts_applied,
                              final_.changes_applied, final_.xacts_applied / std::max(apply_seconds_, 0.001)));
  line("caught up", fmt::format("{:.1f} s after the workload stopped", catch_up_seconds_));
  line("final lag", final_.lag_bytes ? admin::HumanBytes(*final_.lag_bytes) : std::string("unknown"));
  line("verification", equal == comparisons_.size()
                           ? fmt::format("ok: all {} tables identical on both sides", equal)
                           : fmt::format("FAILED: {} of {} tables differ", comparisons_.size() - equal,
                                         comparisons_.size()));
}

void Demo::PrintStatusLine(const Sample& s) {
  std::string note;
  if (!s.copying.empty()) note = "  copying " + s.copying;
  if (!s.errors.empty()) note += "  errors:" + s.errors;
  out_ << fmt::format("  {:>4.0f}s  {:<11}  {:>9} tx  {:>9} tx  {:>10}{}\n", SecondsSince(workload_start_),
                      fmt::format("{}/{} ready", s.ready, s.tables), counters_.transactions.load(), s.xacts_applied,
                      s.lag_bytes ? admin::HumanBytes(*s.lag_bytes) : std::string("-"), note)
       << std::flush;
}

void Demo::Cleanup() {
  if (cleaned_up_) return;
  cleaned_up_ = true;
  workload_stop_.store(true);
  g_stop.store(true);
  monitor_.Disconnect();
  // Threads normally end within a second of the stop flag; one stuck in a
  // server call is released by destroying the servers first.
  auto t = Clock::now();
  while (running_.load() > 0 && Clock::now() - t < kThreadStopTimeout)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (provider_ || subscriber_) out_ << "\nremoving both servers and their folders ... " << std::flush;
  if (running_.load() > 0) {
    if (provider_) provider_->Destroy();
    if (subscriber_) subscriber_->Destroy();
  }
  for (auto& th : threads_)
    if (th.joinable()) th.join();
  threads_.clear();
  bool had_servers = provider_ || subscriber_;
  provider_.reset();
  subscriber_.reset();
  if (had_servers) out_ << "done\n" << std::flush;
}

}  // namespace

Status RunDemo(const DemoOptions& options, std::ostream& out) {
  if (options.seconds < 1 || options.seconds > 24 * 3600)
    return Status::Usage(fmt::format("--seconds {}: give a duration between 1 and 86400", options.seconds));
  SignalGuard signals;
  LogLevelGuard log_level;
  Status result;
  {
    Demo demo(options, out);
    result = demo.Run();
    if (!result.ok()) {
      out << std::flush;
      demo.Cleanup();
    }
  }
  if (g_interrupted.load()) return InterruptedStatus();
  return result;
}

}  // namespace lorry::demo
