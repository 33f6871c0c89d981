// MetricsServer: the HTTP endpoint of `lorry run --metrics-addr HOST:PORT`.
//
//   GET /metrics  the collectable's metrics in Prometheus' text format
//   GET /healthz  200 "ok": the process is alive and serving (liveness)
//
// It binds only the address it is given. Requests are served by civetweb's
// own threads (two), which only call Collect(): the collectable must be
// thread-safe. Stopping (the destructor) waits for requests in flight.
#pragma once

#include <memory>
#include <string>

#include <prometheus/collectable.h>

#include "common/status.h"

class CivetServer;

namespace lorry::metrics {

class MetricsServer {
 public:
  // Starts serving on `addr` (HOST:PORT as config.h's CheckListenAddress
  // accepts; port 0 picks a free one). kUsage when the address cannot be
  // bound, naming it.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& addr,
                                                      std::shared_ptr<prometheus::Collectable> metrics);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  const std::string& addr() const { return addr_; }
  int port() const { return port_; }

 private:
  class Handler;
  MetricsServer() = default;

  std::string addr_;
  int port_ = 0;
  std::unique_ptr<Handler> metrics_handler_;
  std::unique_ptr<Handler> health_handler_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace lorry::metrics
