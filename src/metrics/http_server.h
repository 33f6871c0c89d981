// HttpServer: the HTTP endpoint of `lorry run --metrics-addr HOST:PORT`:
// /metrics, /healthz, /readyz, the status page and its JSON (the routes are
// the service's, daemon/service.cc; this file only serves them).
//
// It binds only the address it is given, answers GET (and HEAD) and nothing
// else, one request per connection (Connection: close). Limits, so that
// idle or slow clients cannot starve a liveness probe:
//   - kThreads workers: each serves one connection at a time, so kThreads
//     connections may be open and idle and a probe is still answered at once;
//   - a connection that has not sent its whole request within
//     kRequestTimeoutMs is closed;
//   - at most kQueue accepted connections wait for a worker, and the
//     kernel's listen backlog is kBacklog: past that, new connections wait
//     in the kernel or are refused; nothing grows without bound.
// Optional HTTP basic authentication guards every path but /healthz.
// Routes run on the server's threads: they must be thread-safe and quick.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

class CivetServer;

namespace lorry::metrics {

struct HttpRequest {
  std::string path;                           // e.g. "/status.json" (no query)
  std::map<std::string, std::string> params;  // query parameters, decoded
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using HttpRoute = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::map<std::string, HttpRoute> routes;  // by exact path; others get 404
  // Basic authentication: both set, or neither.
  std::string basic_auth_user;
  std::string basic_auth_password;
};

class HttpServer {
 public:
  static constexpr int kThreads = 64;
  static constexpr int kRequestTimeoutMs = 3000;
  static constexpr int kQueue = 64;
  static constexpr int kBacklog = 128;

  // Starts serving on `addr` (HOST:PORT as config.h's CheckListenAddress
  // accepts; port 0 picks a free one). kUsage naming the address and the
  // cause (in use, not an address of this host, privileged) when it cannot
  // be bound.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& addr, HttpServerOptions options);
  ~HttpServer();  // stops, waiting for requests in flight
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& addr() const { return addr_; }
  int port() const { return port_; }

 private:
  class Handler;
  HttpServer() = default;

  std::string addr_;
  int port_ = 0;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<CivetServer> server_;
};

// Whether HOST:PORT binds only loopback (127.0.0.0/8, ::1, localhost).
bool IsLoopbackAddress(const std::string& addr);

// Whether an Authorization header value carries `user` and `password` (Basic).
bool BasicAuthMatches(const std::string& header, const std::string& user, const std::string& password);

}  // namespace lorry::metrics
