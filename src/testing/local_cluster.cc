// LocalCluster: initdb, configure, start, stop, crash and remove a throwaway
// PostgreSQL server (see local_cluster.h for the invariants).
//
// Programs are run with fork/exec and argv arrays (never a shell), in their
// own process group, with stdin from /dev/null, stdout and stderr appended to
// a file in the cluster folder, and no inherited file descriptors other than
// those three (so a postmaster never holds one of our sockets open). When we
// are root they run as the `postgres` user.
//
// Killing a server: the postmaster is stopped (SIGSTOP) before its children are
// listed so it cannot fork more, then it and its children are SIGKILLed; a
// process is only killed if its working directory is our data directory, so a
// stale postmaster.pid whose pid was reused never makes us kill a stranger.
//
// A watchdog child per cluster cleans up if this process dies without running
// Destroy() (see StartWatchdog).
#include "testing/local_cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pg/connection.h"

extern char** environ;

namespace lorry::testing {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kStartTimeout = 60;    // seconds, for a whole Start()/StartAgain()
constexpr double kStopTimeout = 60;     // pg_ctl stop
constexpr double kDestroyTimeout = 20;  // pg_ctl stop -m immediate in Destroy()
constexpr double kInitdbTimeout = 120;
constexpr double kKillTimeout = 10;     // waiting for SIGKILLed processes to go
constexpr int kMaxStartAttempts = 5;    // a new port each time the bind fails
constexpr size_t kOutputTail = 2000;
constexpr const char* kDefaultBindir = "/usr/lib/postgresql/15/bin";
constexpr const char* kServerUser = "postgres";

// ---- Process-wide registry of live clusters and the ports they hold.

struct Registry {
  std::mutex mu;  // taken before any cluster's own mutex, never after
  std::set<LocalCluster*> clusters;
  std::mutex ports_mu;
  std::set<int> ports;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;  // leaked: usable during exit
  return *registry;
}

void ReleasePort(int port) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.ports_mu);
  r.ports.erase(port);
}

Result<int> FindAndReservePort() {
  Registry& r = GetRegistry();
  for (int i = 0; i < 50; i++) {
    LORRY_ASSIGN_OR_RETURN(int port, FindFreePort());
    std::lock_guard lock(r.ports_mu);
    if (r.ports.insert(port).second) return port;
  }
  return Status::Internal("no free TCP port found on 127.0.0.1");
}

// ---- Small file helpers.

std::string ReadTail(const std::string& path, size_t bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(bytes) ? size - static_cast<std::streamoff>(bytes) : 0;
  f.seekg(start);
  std::string out(static_cast<size_t>(size - start), '\0');
  f.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(f.gcount()));
  return out;
}

std::string ReadFrom(const std::string& path, std::streamoff offset) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  f.seekg(offset);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::streamoff FileSize(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<std::streamoff>(n);
}

Status AppendToFile(const std::string& path, const std::string& text, bool truncate = false) {
  std::ofstream f(path, truncate ? std::ios::trunc : std::ios::app);
  if (!f) return Status::Internal(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  f << text;
  f.close();
  if (!f) return Status::Internal(fmt::format("cannot write {}", path));
  return Status::Ok();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// A single-quoted postgresql.conf / conninfo value.
std::string Quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// The same status with text added at the end of its message.
Status WithSuffix(const Status& s, const std::string& suffix) {
  std::string m = s.message() + suffix;
  switch (s.kind()) {
    case Status::Kind::kOk: return s;
    case Status::Kind::kUsage: return Status::Usage(m);
    case Status::Kind::kPrecondition: return Status::Precondition(m);
    case Status::Kind::kNotTrue: return Status::NotTrue(m);
    case Status::Kind::kConnection: return Status::Connection(m);
    case Status::Kind::kAuth: return Status::Auth(m);
    case Status::Kind::kServer: return Status::Server(m);
    case Status::Kind::kProtocol: return Status::Protocol(m);
    case Status::Kind::kTimeout: return Status::Timeout(m);
    case Status::Kind::kCancelled: return Status::Cancelled(m);
    case Status::Kind::kInternal: return Status::Internal(m);
  }
  return Status::Internal(m);
}

// ---- The user the PostgreSQL programs run as.

struct RunAs {
  bool switch_user = false;  // true when we are root
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

Result<RunAs> ServerUser() {
  RunAs as;
  if (geteuid() != 0) return as;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = getpwnam_r(kServerUser, &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr)
    return Status::Precondition(fmt::format(
        "running as root, but there is no '{}' system user to run PostgreSQL as (PostgreSQL refuses to run as "
        "root); create it or run as another user",
        kServerUser));
  as.switch_user = true;
  as.uid = pw.pw_uid;
  as.gid = pw.pw_gid;
  as.home = pw.pw_dir ? pw.pw_dir : "/";
  return as;
}

// ---- Running programs.

void CloseFromFd3() {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (long fd = 3; fd < max; fd++) close(static_cast<int>(fd));
}

// Writes a constant message in the child after fork (async-signal-safe).
void ChildFail(const char* what, int code) {
  const char* err = strerror(errno);  // not strictly safe, but only used on the failure path
  (void)!write(2, what, strlen(what));
  (void)!write(2, ": ", 2);
  (void)!write(2, err, strlen(err));
  (void)!write(2, "\n", 1);
  _exit(code);
}

// The child's environment: ours without PG* variables (which would change
// what initdb and pg_ctl do), with messages in English so that log lines can
// be recognised, and the right HOME/USER for the server user.
std::vector<std::string> ChildEnvironment(const RunAs& as) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; e++) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    if (key.starts_with("PG") || key.starts_with("LC_") || key == "LANG" || key == "LANGUAGE") continue;
    if (as.switch_user && (key == "HOME" || key == "USER" || key == "LOGNAME")) continue;
    env.emplace_back(kv);
  }
  env.emplace_back("LC_ALL=C");
  if (as.switch_user) {
    env.push_back("HOME=" + as.home);
    env.push_back(std::string("USER=") + kServerUser);
    env.push_back(std::string("LOGNAME=") + kServerUser);
  }
  return env;
}

// Runs argv (argv[0] is a full path) in cwd, stdout and stderr to out_path
// (truncated); kills its process group after timeout_seconds.
Status RunCommand(const std::vector<std::string>& argv, const std::string& cwd, const std::string& out_path,
                  const RunAs& as, double timeout_seconds) {
  std::vector<std::string> env_strings = ChildEnvironment(as);
  std::vector<char*> args, env;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env_strings) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);

  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return Status::Internal(fmt::format("cannot create {}: {}", out_path, std::strerror(errno)));
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) {
    close(out);
    return Status::Internal(fmt::format("cannot open /dev/null: {}", std::strerror(errno)));
  }

  pid_t pid = fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    setpgid(0, 0);  // Ctrl-C in a terminal reaches us, not the programs
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(126);
    CloseFromFd3();
    if (as.switch_user) {
      if (setgroups(1, &as.gid) != 0) ChildFail("setgroups", 126);
      if (setgid(as.gid) != 0) ChildFail("setgid", 126);
      if (setuid(as.uid) != 0) ChildFail("setuid", 126);
    }
    if (chdir(cwd.c_str()) != 0) ChildFail("chdir", 126);
    execve(args[0], args.data(), env.data());
    ChildFail(args[0], 127);
  }
  int fork_errno = errno;
  close(out);
  close(null);
  if (pid < 0) return Status::Internal(fmt::format("fork: {}", std::strerror(fork_errno)));

  std::string name = fs::path(argv[0]).filename().string();
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  bool timed_out = false;
  auto sleep = std::chrono::milliseconds(5);
  while (true) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return Status::Internal(fmt::format("waitpid {}: {}", name, std::strerror(errno)));
    if (Clock::now() > deadline) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, std::chrono::milliseconds(50));
  }

  std::string output = Trim(ReadTail(out_path, kOutputTail));
  if (timed_out)
    return Status::Timeout(fmt::format("{} did not finish within {:.0f} s; its output:\n{}", name, timeout_seconds, output));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  std::string how = WIFEXITED(status) ? fmt::format("exited with code {}", WEXITSTATUS(status))
                                      : fmt::format("was killed by signal {}", WTERMSIG(status));
  return Status::Precondition(fmt::format("{} {}; its output:\n{}", name, how, output));
}

// ---- The watchdog.
//
// A forked child that blocks reading a pipe whose write end only we hold. EOF
// means we are gone: either Destroy() finished (then there is nothing left to
// do) or we died without it (SIGKILL, a crash, an unhandled SIGTERM from a
// test timeout). Then it asks the postmaster for an immediate shutdown
// (SIGQUIT), waits for postmaster.pid to go (SIGKILL after kWatchdogGrace) and
// runs rm -rf on the folder. It lives in its own session and ignores
// SIGINT/SIGTERM/SIGHUP, so Ctrl-C or a group kill does not stop it early.
// After fork only async-signal-safe calls are used; every string is prepared
// before.

constexpr int kWatchdogGraceMs = 10000;

struct WatchdogPlan {
  std::string basedir;
  std::string pid_file;  // <datadir>/postmaster.pid
  std::string datadir;   // canonical, compared with /proc/<pid>/cwd
  std::string rm;        // path of rm
};

void SleepMs(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// The postmaster's pid if postmaster.pid names a process working in datadir.
pid_t WatchdogPostmaster(const WatchdogPlan& plan) {
  int fd = open(plan.pid_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  long pid = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) pid = pid * 10 + (buf[i] - '0');
  if (pid <= 0) return 0;
  char proc[64] = "/proc/";
  char digits[24];
  int nd = 0;
  for (long v = pid; v > 0; v /= 10) digits[nd++] = static_cast<char>('0' + v % 10);
  size_t len = strlen(proc);
  while (nd > 0) proc[len++] = digits[--nd];
  memcpy(proc + len, "/cwd", 5);
  char cwd[4096];
  ssize_t m = readlink(proc, cwd, sizeof(cwd));
  if (m <= 0 || static_cast<size_t>(m) != plan.datadir.size() || memcmp(cwd, plan.datadir.data(), m) != 0) return 0;
  return static_cast<pid_t>(pid);
}

[[noreturn]] void WatchdogMain(const WatchdogPlan& plan, char* const* rm_argv, char* const* empty_env) {
  char byte;
  while (true) {
    ssize_t n = read(0, &byte, 1);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  if (pid_t pid = WatchdogPostmaster(plan); pid > 0) {
    kill(pid, SIGQUIT);
    for (int waited = 0; waited < kWatchdogGraceMs && access(plan.pid_file.c_str(), F_OK) == 0; waited += 50)
      SleepMs(50);
    if (WatchdogPostmaster(plan) == pid) kill(pid, SIGKILL);
  }
  if (access(plan.basedir.c_str(), F_OK) == 0) {
    pid_t rm = fork();
    if (rm == 0) {
      execve(plan.rm.c_str(), rm_argv, empty_env);
      _exit(127);
    }
    int status;
    if (rm > 0)
      while (waitpid(rm, &status, 0) < 0 && errno == EINTR) {
      }
  }
  _exit(0);
}

// Forks the watchdog; returns its pid and sets *write_fd (close it to let the
// watchdog go), or -1 if it could not be started (we then rely on Destroy()).
pid_t StartWatchdog(const WatchdogPlan& plan, int* write_fd) {
  std::vector<char*> rm_argv{const_cast<char*>("rm"), const_cast<char*>("-rf"), const_cast<char*>("--"),
                             const_cast<char*>(plan.basedir.c_str()), nullptr};
  char* empty_env[] = {nullptr};
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(fds[0], 0) < 0) _exit(1);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    CloseFromFd3();
    if (chdir("/") != 0) _exit(1);
    WatchdogMain(plan, rm_argv.data(), empty_env);
  }
  close(fds[0]);
  if (null >= 0) close(null);
  if (pid < 0) {
    close(fds[1]);
    return -1;
  }
  *write_fd = fds[1];
  return pid;
}

// Lets the watchdog go (nothing is left for it to do) and reaps it.
void StopWatchdog(pid_t pid, int write_fd) {
  if (write_fd >= 0) close(write_fd);
  if (pid <= 0) return;
  int status;
  for (int waited = 0; waited < 5000; waited += 10) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) return;
    SleepMs(10);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// ---- Finding the server's processes.

// Process state from /proc/<pid>/stat ('Z' for a zombie), and its parent.
bool ReadProcStat(pid_t pid, char* state, pid_t* ppid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return false;
  size_t close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return false;
  std::istringstream rest(line.substr(close_paren + 1));
  long parent = 0;
  rest >> *state >> parent;
  *ppid = static_cast<pid_t>(parent);
  return static_cast<bool>(rest);
}

bool Alive(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  if (!ReadProcStat(pid, &state, &ppid)) return kill(pid, 0) == 0 || errno == EPERM;
  return state != 'Z' && state != 'X';
}

// True if pid is a live process working in dir (postmasters and their
// children run in the data directory).
bool WorksIn(pid_t pid, const fs::path& dir) {
  std::error_code ec;
  fs::path cwd = fs::read_symlink(fmt::format("/proc/{}/cwd", pid), ec);
  return !ec && Alive(pid) && fs::equivalent(cwd, dir, ec);
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    char state = 0;
    pid_t ppid = 0;
    if (ReadProcStat(static_cast<pid_t>(pid), &state, &ppid) && ppid == parent) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

struct PidFile {
  pid_t pid = 0;
  key_t shm_key = -1;
  int shm_id = -1;
};

// postmaster.pid: line 1 the pid, line 7 "<shm key> <shm id>".
std::optional<PidFile> ReadPidFile(const std::string& datadir) {
  std::ifstream f(datadir + "/postmaster.pid");
  if (!f) return std::nullopt;
  PidFile p;
  std::string line;
  for (int n = 1; std::getline(f, line); n++) {
    if (n == 1) p.pid = static_cast<pid_t>(std::atol(line.c_str()));
    if (n == 7) {
      std::istringstream in(line);
      long key = -1, id = -1;
      if (in >> key >> id) {
        p.shm_key = static_cast<key_t>(key);
        p.shm_id = static_cast<int>(id);
      }
    }
  }
  return p;
}

}  // namespace

// ---- Public functions.

Result<int> FindFreePort() {
  Registry& r = GetRegistry();
  for (int i = 0; i < 50; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::Internal(fmt::format("socket: {}", std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    if (rc == 0) rc = getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    int err = errno;
    close(fd);
    if (rc != 0) return Status::Internal(fmt::format("cannot bind a TCP port on 127.0.0.1: {}", std::strerror(err)));
    int port = ntohs(addr.sin_port);
    std::lock_guard lock(r.ports_mu);
    if (!r.ports.contains(port)) return port;
  }
  return Status::Internal("no free TCP port found on 127.0.0.1");
}

void StopAllLocalClusters() {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  for (LocalCluster* c : r.clusters) c->Destroy();
}

// ---- LocalCluster.

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}

LocalCluster::~LocalCluster() {
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    r.clusters.erase(this);
  }
  Destroy();
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(LocalClusterOptions options) {
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit([] { StopAllLocalClusters(); }); });

  std::unique_ptr<LocalCluster> cluster(new LocalCluster(std::move(options)));
  {
    // Registered before anything exists on disk, so that StopAllLocalClusters()
    // also cleans up a cluster that is still starting.
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    r.clusters.insert(cluster.get());
  }
  std::lock_guard lock(cluster->mu_);
  if (cluster->destroyed_) return Status::Cancelled("local cluster: stopped while starting");
  // On failure the destructor stops whatever was started and removes the folder.
  LORRY_RETURN_IF_ERROR(cluster->Init());
  LORRY_RETURN_IF_ERROR(cluster->StartServer(/*may_change_port=*/true));
  spdlog::debug("local_cluster={} port={} datadir={} event=started", cluster->name(), cluster->port_,
                cluster->datadir_);
  return cluster;
}

Status LocalCluster::Init() {
  const char* env_bindir = std::getenv("PG_BINDIR");
  bindir_ = !options_.bindir.empty()             ? options_.bindir
            : (env_bindir && *env_bindir != '\0') ? env_bindir
                                                  : kDefaultBindir;
  for (const char* program : {"initdb", "pg_ctl", "postgres"}) {
    std::string path = bindir_ + "/" + program;
    if (access(path.c_str(), X_OK) != 0)
      return Status::Precondition(fmt::format(
          "local cluster {}: PostgreSQL program {} not found or not executable; set PG_BINDIR to the folder "
          "holding initdb, pg_ctl and postgres",
          options_.name, path));
  }
  LORRY_ASSIGN_OR_RETURN(RunAs as, ServerUser());

  // The folder: $TMPDIR (if the server user can reach it) or /tmp. Unix socket
  // paths are limited to ~100 bytes, so a very long TMPDIR is not used either.
  std::string parent = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t && *t == '/' && std::strlen(t) < 60) {
    struct stat st {};
    bool reachable = stat(t, &st) == 0 && S_ISDIR(st.st_mode);
    for (fs::path p = t; reachable && as.switch_user && p != p.parent_path(); p = p.parent_path())
      reachable = stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH);
    if (reachable) parent = t;
  }
  std::string safe_name;
  for (char c : options_.name.substr(0, 20)) safe_name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  std::string tmpl = fmt::format("{}/lorry-{}-XXXXXX", parent, safe_name);
  if (mkdtemp(tmpl.data()) == nullptr)
    return Status::Internal(fmt::format("local cluster {}: mkdtemp {}: {}", options_.name, tmpl, std::strerror(errno)));
  basedir_ = tmpl;
  datadir_ = basedir_ + "/data";
  logfile_ = basedir_ + "/server.log";
  if (as.switch_user && chown(basedir_.c_str(), as.uid, as.gid) != 0)
    return Status::Internal(fmt::format("local cluster {}: chown {}: {}", options_.name, basedir_, std::strerror(errno)));

  WatchdogPlan plan{basedir_, datadir_ + "/postmaster.pid", fs::weakly_canonical(datadir_).string(),
                    access("/usr/bin/rm", X_OK) == 0 ? "/usr/bin/rm" : "/bin/rm"};
  watchdog_ = StartWatchdog(plan, &watchdog_fd_);

  std::string output;
  if (options_.standby_of != nullptr)
    LORRY_RETURN_IF_ERROR(CopyFromPrimary());
  else
    LORRY_RETURN_IF_ERROR(Annotate(RunProgram(
        "initdb", {"-D", datadir_, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"},
        kInitdbTimeout, &output).WithContext("initdb")));

  std::ifstream version_file(datadir_ + "/PG_VERSION");
  if (!(version_file >> major_version_))
    return Status::Internal(fmt::format("local cluster {}: cannot read {}/PG_VERSION", options_.name, datadir_));

  LORRY_ASSIGN_OR_RETURN(port_, FindAndReservePort());
  return WriteConfig();
}

// A low-level base backup (the npm server packages ship no pg_basebackup):
// the copy is taken between pg_backup_start and pg_backup_stop in one
// session, and pg_backup_stop's label file makes the standby start from the
// backup's checkpoint. Files that vanish while being copied do not matter:
// WAL replay from that checkpoint repairs what the copy caught mid-change.
Status LocalCluster::CopyFromPrimary() {
  const LocalCluster& primary = *options_.standby_of;
  if (primary.major_version() < 15)
    return Status::Precondition("local cluster: a standby needs PostgreSQL 15+ (pg_backup_start)");
  LORRY_ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(primary.Conninfo(), {{}, "primary"}));
  LORRY_RETURN_IF_ERROR(conn.Exec("SELECT pg_backup_start('lorry standby', true)").status());
  LORRY_ASSIGN_OR_RETURN(RunAs as, ServerUser());
  (void)RunCommand({"/bin/cp", "-a", primary.datadir() + "/.", datadir_}, basedir_, basedir_ + "/cp.out", as, 120);
  LORRY_ASSIGN_OR_RETURN(auto label, conn.QueryValue("SELECT labelfile FROM pg_backup_stop(true)"));
  if (!label) return Status::Internal("pg_backup_stop returned no label file");
  for (const char* stale : {"postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal"})
    std::remove((datadir_ + "/" + stale).c_str());
  LORRY_RETURN_IF_ERROR(AppendToFile(datadir_ + "/backup_label", *label, /*truncate=*/true));
  LORRY_RETURN_IF_ERROR(AppendToFile(datadir_ + "/standby.signal", "", /*truncate=*/true));
  if (as.switch_user)
    for (const char* f : {"backup_label", "standby.signal"})
      if (chown((datadir_ + "/" + f).c_str(), as.uid, as.gid) != 0)
        return Status::Internal(fmt::format("chown {}/{}: {}", datadir_, f, std::strerror(errno)));
  return AppendToFile(datadir_ + "/postgresql.conf",
                      fmt::format("\n# A standby of {}.\nprimary_conninfo = 'host={} port={} user=postgres "
                                  "dbname=postgres'\nhot_standby = on\n",
                                  primary.name(), primary.host(), primary.port()));
}

Status LocalCluster::WriteConfig() {
  std::string conf = fmt::format(
      "\n# Added by lorry's LocalCluster.\n"
      "listen_addresses = '127.0.0.1'\n"
      "port = {}\n"
      "unix_socket_directories = {}\n"
      "max_connections = 50\n"
      "shared_buffers = 32MB\n"
      "password_encryption = 'scram-sha-256'\n"
      "logging_collector = off\n"
      "log_line_prefix = '%m [%p] %q%u@%d '\n",
      port_, Quote(basedir_));
  if (options_.logical) conf += "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n";
  for (const auto& line : options_.settings) conf += line + "\n";
  LORRY_RETURN_IF_ERROR(AppendToFile(datadir_ + "/postgresql.conf", conf));

  // Trust for the superuser (tests and the demo connect without a password),
  // passwords for everyone else (so wrong passwords can be tested).
  const char* hba =
      "# Written by lorry's LocalCluster.\n"
      "local all all trust\n"
      "host all postgres 127.0.0.1/32 trust\n"
      "host replication postgres 127.0.0.1/32 trust\n"
      "host all all 127.0.0.1/32 scram-sha-256\n"
      "host replication all 127.0.0.1/32 scram-sha-256\n";
  return AppendToFile(datadir_ + "/pg_hba.conf", hba, /*truncate=*/true);
}

Status LocalCluster::WritePortConfig() {
  // Later lines win in postgresql.conf.
  return AppendToFile(datadir_ + "/postgresql.conf", fmt::format("port = {}  # previous port was taken\n", port_));
}

Status LocalCluster::RunProgram(const std::string& program, const std::vector<std::string>& args,
                                double timeout_seconds, std::string* output) {
  LORRY_ASSIGN_OR_RETURN(RunAs as, ServerUser());
  std::vector<std::string> argv{bindir_ + "/" + program};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out_path = basedir_ + "/" + program + ".out";
  Status st = RunCommand(argv, basedir_, out_path, as, timeout_seconds);
  *output = Trim(ReadTail(out_path, kOutputTail));
  return st;
}

Status LocalCluster::Annotate(const Status& status) const {
  if (status.ok()) return status;
  Status s = status.WithContext(fmt::format("local cluster {} (port {}, {})", options_.name, port_, basedir_));
  std::string tail = Trim(LogTail(2000));
  return tail.empty() ? s : WithSuffix(s, "\nserver log tail:\n" + tail);
}

Status LocalCluster::StartServer(bool may_change_port) {
  if (destroyed_) return Status::Cancelled(fmt::format("local cluster {} was stopped for good", options_.name));
  if (running_) return Status::Precondition(fmt::format("local cluster {} is already running", options_.name));
  auto deadline = Clock::now() + std::chrono::duration<double>(kStartTimeout);
  Status last;
  for (int attempt = 1; attempt <= kMaxStartAttempts; attempt++) {
    double remaining = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (remaining < 1) break;
    std::streamoff log_offset = FileSize(logfile_);
    std::string output;
    Status st = RunProgram("pg_ctl",
                           {"start", "-D", datadir_, "-l", logfile_, "-w", "-t",
                            std::to_string(static_cast<int>(std::ceil(remaining)))},
                           remaining + 10, &output)
                    .WithContext("pg_ctl start");
    // pg_ctl -w saw the server ready; make sure it answers on TCP too.
    while (st.ok()) {
      auto conn = pg::PgConn::Connect(Conninfo(), {{{"connect_timeout", "2"}}, "local cluster"});
      if (conn.ok()) {
        running_ = true;
        return Status::Ok();
      }
      if (Clock::now() > deadline) st = Status::Timeout("server not reachable: " + conn.status().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    last = st;
    KillServer();  // whatever half-started is not left running

    // Another process may have taken the port between FindFreePort and bind.
    std::string log = ReadFrom(logfile_, log_offset);
    bool bind_failed = log.find("could not bind") != std::string::npos ||
                       log.find("could not create any TCP/IP sockets") != std::string::npos;
    if (!bind_failed) break;
    if (may_change_port) {
      ReleasePort(port_);
      LORRY_ASSIGN_OR_RETURN(port_, FindAndReservePort());
      LORRY_RETURN_IF_ERROR(WritePortConfig());
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  if (last.ok()) last = Status::Timeout(fmt::format("server did not start within {:.0f} s", kStartTimeout));
  return Annotate(last.WithContext("start"));
}

Status LocalCluster::StopServer(std::string_view mode) {
  if (!ReadPidFile(datadir_)) {
    running_ = false;
    return Status::Ok();  // not running
  }
  double timeout = mode == "immediate" ? kDestroyTimeout : kStopTimeout;
  std::string output;
  Status st = RunProgram("pg_ctl",
                         {"stop", "-D", datadir_, "-m", std::string(mode), "-w", "-t",
                          std::to_string(static_cast<int>(timeout))},
                         timeout + 10, &output);
  if (!st.ok()) {
    // A server killed earlier leaves a stale postmaster.pid; that is stopped.
    auto pid_file = ReadPidFile(datadir_);
    if (pid_file && WorksIn(pid_file->pid, datadir_)) return Annotate(st.WithContext("pg_ctl stop"));
    KillServer();  // tidies the stale files and shared memory
  }
  running_ = false;
  return Status::Ok();
}

void LocalCluster::KillServer() {
  running_ = false;
  auto pid_file = ReadPidFile(datadir_);
  if (!pid_file) return;
  fs::path dir = datadir_;
  std::vector<pid_t> victims;
  if (pid_file->pid > 0 && WorksIn(pid_file->pid, dir)) {
    kill(pid_file->pid, SIGSTOP);  // no more forks while we list its children
    victims.push_back(pid_file->pid);
    for (pid_t child : ChildrenOf(pid_file->pid))
      if (WorksIn(child, dir)) victims.push_back(child);
    for (pid_t pid : victims) kill(pid, SIGKILL);
  }
  auto deadline = Clock::now() + std::chrono::duration<double>(kKillTimeout);
  while (Clock::now() < deadline &&
         std::any_of(victims.begin(), victims.end(), [](pid_t p) { return Alive(p); }))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  // The main shared memory is anonymous; the small System V segment would
  // outlive the processes (as it would not outlive a machine crash).
  if (pid_file->shm_id >= 0) {
    shmid_ds info{};
    if (shmctl(pid_file->shm_id, IPC_STAT, &info) == 0 && info.shm_perm.__key == pid_file->shm_key &&
        info.shm_nattch == 0)
      shmctl(pid_file->shm_id, IPC_RMID, nullptr);
  }
  // Lock files naming a dead (possibly unreaped) pid would stop the next start.
  if (std::none_of(victims.begin(), victims.end(), [](pid_t p) { return Alive(p); })) {
    std::error_code ec;
    fs::remove(datadir_ + "/postmaster.pid", ec);
    fs::remove(fmt::format("{}/.s.PGSQL.{}.lock", basedir_, port_), ec);
    fs::remove(fmt::format("{}/.s.PGSQL.{}", basedir_, port_), ec);
  }
}

void LocalCluster::Destroy() {
  std::lock_guard lock(mu_);
  if (destroyed_) return;
  destroyed_ = true;
  if (!datadir_.empty()) {
    if (ReadPidFile(datadir_)) (void)StopServer("immediate");
    KillServer();
  }
  if (!basedir_.empty()) {
    std::error_code ec;
    fs::remove_all(basedir_, ec);
  }
  if (port_ != 0) ReleasePort(port_);
  StopWatchdog(watchdog_, watchdog_fd_);
  watchdog_ = -1;
  watchdog_fd_ = -1;
  spdlog::debug("local_cluster={} port={} event=removed", options_.name, port_);
}

std::string LocalCluster::Conninfo(std::string_view dbname, std::string_view user) const {
  auto value = [](std::string_view v) {
    bool plain = !v.empty() && std::none_of(v.begin(), v.end(), [](char c) {
      return c == ' ' || c == '\'' || c == '\\' || c == '=' || std::isspace(static_cast<unsigned char>(c));
    });
    return plain ? std::string(v) : Quote(v);
  };
  return fmt::format("host={} port={} dbname={} user={}", host_, port_, value(dbname), value(user));
}

Status LocalCluster::Stop(std::string_view mode) {
  if (mode != "smart" && mode != "fast" && mode != "immediate")
    return Status::Usage(fmt::format("unknown shutdown mode '{}' (smart, fast or immediate)", mode));
  std::lock_guard lock(mu_);
  if (destroyed_) return Status::Cancelled(fmt::format("local cluster {} was stopped for good", options_.name));
  return StopServer(mode);
}

Status LocalCluster::StartAgain() {
  std::lock_guard lock(mu_);
  return StartServer(/*may_change_port=*/false);
}

Status LocalCluster::Restart() {
  std::lock_guard lock(mu_);
  if (destroyed_) return Status::Cancelled(fmt::format("local cluster {} was stopped for good", options_.name));
  LORRY_RETURN_IF_ERROR(StopServer("fast"));
  return StartServer(/*may_change_port=*/false);
}

Status LocalCluster::Kill9() {
  std::lock_guard lock(mu_);
  if (destroyed_) return Status::Cancelled(fmt::format("local cluster {} was stopped for good", options_.name));
  auto pid_file = ReadPidFile(datadir_);
  if (!pid_file || !WorksIn(pid_file->pid, datadir_))
    return Status::Precondition(fmt::format("local cluster {} is not running", options_.name));
  KillServer();
  pid_file = ReadPidFile(datadir_);
  if (pid_file && WorksIn(pid_file->pid, datadir_))
    return Annotate(Status::Internal(fmt::format("postmaster {} survived SIGKILL", pid_file->pid)));
  return Status::Ok();
}

Status LocalCluster::SetSetting(std::string_view line) {
  std::lock_guard lock(mu_);
  if (destroyed_) return Status::Cancelled(fmt::format("local cluster {} was stopped for good", options_.name));
  return AppendToFile(datadir_ + "/postgresql.conf", std::string(line) + "\n");
}

Status LocalCluster::Execute(std::string_view sql, std::string_view dbname) {
  pg::ConnectOptions options;
  options.role = "local cluster " + options_.name;
  options.overrides = {{"options", "-c client_min_messages=warning"}};  // no NOTICEs on stderr
  LORRY_ASSIGN_OR_RETURN(pg::PgConn conn, pg::PgConn::Connect(Conninfo(dbname), options));
  LORRY_ASSIGN_OR_RETURN(pg::PgResult result, conn.Exec(sql));
  (void)result;
  return Status::Ok();
}

std::string LocalCluster::LogTail(size_t bytes) const {
  if (logfile_.empty()) return "";
  return ReadTail(logfile_, bytes);
}

}  // namespace lorry::testing
