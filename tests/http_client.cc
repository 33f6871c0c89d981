#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

namespace lorry::test {

HttpResponse HttpExchange(int port, const std::string& request, double timeout_seconds) {
  HttpResponse r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{static_cast<time_t>(timeout_seconds), static_cast<suseconds_t>((timeout_seconds - static_cast<int>(timeout_seconds)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return r;
  }
  (void)!write(fd, request.data(), request.size());
  std::string all;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  std::smatch m;
  if (std::regex_search(all, m, std::regex("^HTTP/1\\.[01] (\\d{3})"))) r.code = std::stoi(m[1]);
  size_t body = all.find("\r\n\r\n");
  r.head = all.substr(0, body);
  if (body != std::string::npos) r.body = all.substr(body + 4);
  return r;
}

HttpResponse HttpGet(int port, const std::string& path, const std::vector<std::string>& headers) {
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  return HttpExchange(port, req + "\r\n");
}

int MetricsPort(LorryProcess* run) {
  int port = 0;
  Eventually([&] {
    std::smatch m;
    std::string log = run->Log();
    if (!std::regex_search(log, m, std::regex(R"(serving metrics on \S+ \(port (\d+)\))"))) return false;
    port = std::stoi(m[1]);
    return true;
  });
  return port;
}

}  // namespace lorry::test
