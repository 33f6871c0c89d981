#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include <fmt/format.h>

namespace lorry::test {

namespace {

constexpr size_t kMaxBuffered = 1 << 20;

void NonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void CloseHard(int fd) {
  if (fd < 0) return;
  linger l{1, 0};  // RST, as a cut connection looks to both ends
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

}  // namespace

struct TcpProxy::Pair {
  int client = -1;
  int server = -1;
  std::string to_server;
  std::string to_client;
  bool dead = false;
};

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(listen_fd_, 64) != 0)
    throw std::runtime_error("TcpProxy: cannot listen on 127.0.0.1");
  socklen_t len = sizeof(a);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  NonBlocking(listen_fd_);
  if (pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("TcpProxy: pipe");
  NonBlocking(wake_[0]);
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  quit_ = true;
  Wake();
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
}

void TcpProxy::Wake() {
  char c = 0;
  (void)!write(wake_[1], &c, 1);
}

void TcpProxy::Pass() {
  blackhole_ = false;
  Wake();
}

void TcpProxy::PassLosingCloses() {
  lose_closes_ = true;
  Pass();
}

void TcpProxy::Blackhole() {
  blackhole_ = true;
  Wake();
}

void TcpProxy::CutAll() {
  cut_ = true;
  Wake();
  while (cut_ && !quit_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

int TcpProxy::connections() const { return open_.load(); }

std::string TcpProxy::Route(const std::string& conninfo) const {
  return fmt::format("{} host=127.0.0.1 port={}", conninfo, port_);
}

void TcpProxy::Loop() {
  std::vector<std::unique_ptr<Pair>> pairs;
  std::vector<int> orphans;  // server sides of connections whose close was lost
  while (!quit_) {
    if (cut_) {
      for (auto& p : pairs) {
        CloseHard(p->client);
        CloseHard(p->server);
      }
      pairs.clear();
      cut_ = false;
    }
    bool hole = blackhole_;
    if (!hole && lose_closes_) {
      // Clients that closed meanwhile (FIN received, data or not before it):
      // their server side stays open, silent, until the proxy goes.
      for (auto& p : pairs) {
        pollfd c{p->client, POLLRDHUP, 0};
        if (poll(&c, 1, 0) > 0 && (c.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
          CloseHard(p->client);
          orphans.push_back(p->server);
          p->client = p->server = -1;
        }
      }
      std::erase_if(pairs, [](const auto& p) { return p->client < 0; });
      lose_closes_ = false;
    }
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (!hole) {
      for (auto& p : pairs) {
        short c = (p->to_server.size() < kMaxBuffered ? POLLIN : 0) | (p->to_client.empty() ? 0 : POLLOUT);
        short s = (p->to_client.size() < kMaxBuffered ? POLLIN : 0) | (p->to_server.empty() ? 0 : POLLOUT);
        fds.push_back({p->client, c, 0});
        fds.push_back({p->server, s, 0});
      }
    }
    if (poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) break;
    if (fds[0].revents) {
      char buf[64];
      while (read(wake_[0], buf, sizeof(buf)) > 0) {
      }
    }
    size_t polled = hole ? 0 : pairs.size();  // pairs accepted below have no pollfd yet
    if (fds[1].revents & POLLIN) {
      while (true) {
        int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) break;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
          CloseHard(c);
          close(s);
          continue;
        }
        NonBlocking(c);
        NonBlocking(s);
        auto p = std::make_unique<Pair>();
        p->client = c;
        p->server = s;
        pairs.push_back(std::move(p));
      }
    }
    if (!hole) {
      char buf[65536];
      for (size_t i = 0; i < polled; ++i) {
        Pair& p = *pairs[i];
        const pollfd& cf = fds[2 + 2 * i];
        const pollfd& sf = fds[3 + 2 * i];
        auto pump_in = [&](int fd, short revents, std::string* out) {
          if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
          ssize_t n = read(fd, buf, sizeof(buf));
          if (n > 0)
            out->append(buf, n);
          else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            p.dead = true;
        };
        auto pump_out = [&](int fd, short revents, std::string* in) {
          if (!(revents & POLLOUT) || in->empty()) return;
          ssize_t n = send(fd, in->data(), in->size(), MSG_NOSIGNAL);  // a closed peer is not a signal
          if (n > 0)
            in->erase(0, n);
          else if (n < 0 && errno != EAGAIN && errno != EINTR)
            p.dead = true;
        };
        pump_in(p.client, cf.revents, &p.to_server);
        pump_in(p.server, sf.revents, &p.to_client);
        pump_out(p.server, sf.revents, &p.to_server);
        pump_out(p.client, cf.revents, &p.to_client);
      }
      // A side that closed: pass on what is buffered for the other, then close both.
      for (auto& p : pairs) {
        if (!p->dead) continue;
        if (!p->to_client.empty()) (void)!send(p->client, p->to_client.data(), p->to_client.size(), MSG_NOSIGNAL);
        if (!p->to_server.empty()) (void)!send(p->server, p->to_server.data(), p->to_server.size(), MSG_NOSIGNAL);
        close(p->client);
        close(p->server);
        p->client = p->server = -1;
      }
      std::erase_if(pairs, [](const auto& p) { return p->client < 0; });
    }
    open_ = static_cast<int>(pairs.size());
  }
  for (auto& p : pairs) {
    CloseHard(p->client);
    CloseHard(p->server);
  }
  for (int fd : orphans) CloseHard(fd);
}

}  // namespace lorry::test
