// TcpProxy: a test-only TCP forwarder on 127.0.0.1, put between lorry and a
// server to inject network faults on demand:
//   - Pass():      forward in both directions (the initial mode);
//   - PassLosingCloses(): Pass(), but a connection its client closed during
//                  the blackhole stays open on the server side, its close
//                  and last data never delivered: a network down for longer
//                  than the client's retransmissions (the server keeps such
//                  a session until its keepalives fail);
//   - Blackhole(): stop forwarding without closing anything, like a network
//                  that drops every packet: calls block, nothing fails. New
//                  connections are accepted and held too. Pass() resumes
//                  them (what was sent meanwhile is delivered then);
//   - CutAll():    close every current connection at once (RST), keep
//                  accepting new ones.
//
// Sockets are close-on-exec: a program the test starts must not keep a
// proxied connection open. One thread polls every socket (non-blocking, buffered per direction, so a
// slow reader on one side never blocks the other). Loopback only.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lorry::test {

class TcpProxy {
 public:
  // Listens on a free 127.0.0.1 port and forwards to target_port there.
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void Pass();
  void PassLosingCloses();
  void Blackhole();
  void CutAll();
  int connections() const;  // currently open client connections

  // conninfo with host/port pointing at this proxy (appended: later keys win).
  std::string Route(const std::string& conninfo) const;

 private:
  struct Pair;
  void Loop();
  void Wake();

  int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> quit_{false};
  std::atomic<bool> blackhole_{false};
  std::atomic<bool> cut_{false};
  std::atomic<bool> lose_closes_{false};
  std::atomic<int> open_{0};
  std::thread thread_;
};

}  // namespace lorry::test
