#include "metrics/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

namespace lorry::metrics {
namespace {

std::string Exchange(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  return all;
}

HttpServerOptions Routes() {
  HttpServerOptions o;
  o.routes["/healthz"] = [](const HttpRequest&) { return HttpResponse{200, "text/plain", "ok\n", {}}; };
  o.routes["/echo"] = [](const HttpRequest& r) {
    std::string body;
    for (const auto& [k, v] : r.params) body += k + "=" + v + ";";
    return HttpResponse{200, "text/plain", body, {}};
  };
  return o;
}

TEST(HttpServer, RoutesQueriesAndErrors) {
  auto s = HttpServer::Start("127.0.0.1:0", Routes());
  ASSERT_TRUE(s.ok()) << s.status().message();
  int port = (*s)->port();
  EXPECT_NE(Exchange(port, "GET /echo?table=public.%22T%20x%22&x HTTP/1.0\r\n\r\n").find("table=public.\"T x\";x=;"),
            std::string::npos);
  EXPECT_EQ(Exchange(port, "GET /nope HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(Exchange(port, "DELETE /healthz HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_NE(Exchange(port, "\x01\x02garbage\r\n\r\n").find(" 400 Bad Request"), std::string::npos);
  std::string head = Exchange(port, "HEAD /healthz HTTP/1.0\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 3"), std::string::npos);
  EXPECT_EQ(head.find("ok\n"), std::string::npos) << "no body for HEAD";
}

// An idle connection holds a worker only until the request timeout (with 50
// of them open, /healthz still answers at once: tests/http_test.cc).
TEST(HttpServer, IdleConnectionIsClosedAfterTheRequestTimeout) {
  auto s = HttpServer::Start("127.0.0.1:0", Routes());
  ASSERT_TRUE(s.ok());
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>((*s)->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{HttpServer::kRequestTimeoutMs / 1000 + 3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_LE(read(fd, &c, 1), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(HttpServer::kRequestTimeoutMs + 2000));
  close(fd);
}

TEST(HttpServer, BusyPortIsNamed) {
  auto a = HttpServer::Start("127.0.0.1:0", Routes());
  ASSERT_TRUE(a.ok());
  std::string addr = "127.0.0.1:" + std::to_string((*a)->port());
  auto b = HttpServer::Start(addr, Routes());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("port " + std::to_string((*a)->port()) + " is already in use"),
            std::string::npos)
      << b.status().message();
  auto c = HttpServer::Start("192.0.2.1:0", Routes());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("192.0.2.1 is not an address of this host"), std::string::npos)
      << c.status().message();
}

TEST(HttpServer, BasicAuthAndLoopback) {
  EXPECT_TRUE(BasicAuthMatches("Basic cHJvbTpwdw==", "prom", "pw"));
  EXPECT_TRUE(BasicAuthMatches("basic cHJvbTpwdw==", "prom", "pw"));
  EXPECT_FALSE(BasicAuthMatches("Basic cHJvbTpwdw==", "prom", "pW"));
  EXPECT_FALSE(BasicAuthMatches("Bearer cHJvbTpwdw==", "prom", "pw"));
  EXPECT_FALSE(BasicAuthMatches("Basic !!!", "prom", "pw"));
  for (const char* a : {"127.0.0.1:1", "127.9.0.1:1", "[::1]:1", "localhost:1"}) EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  for (const char* a : {":1", "0.0.0.0:1", "10.0.0.1:1", "[::]:1"}) EXPECT_FALSE(IsLoopbackAddress(a)) << a;
}

}  // namespace
}  // namespace lorry::metrics
