#include "metrics/http_server.h"

#include <sstream>

#include <CivetServer.h>
#include <fmt/format.h>
#include <prometheus/text_serializer.h>

namespace lorry::metrics {

class MetricsServer::Handler : public CivetHandler {
 public:
  // metrics null: the health endpoint.
  explicit Handler(std::shared_ptr<prometheus::Collectable> metrics) : metrics_(std::move(metrics)) {}

  bool handleGet(CivetServer*, mg_connection* conn) override {
    std::string body;
    const char* type = "text/plain; charset=utf-8";
    if (metrics_) {
      std::ostringstream out;
      prometheus::TextSerializer().Serialize(out, metrics_->Collect());
      body = out.str();
      type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
      body = "ok\n";
    }
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-cache\r\n"
              "Connection: close\r\n\r\n",
              type, body.size());
    mg_write(conn, body.data(), body.size());
    return true;
  }

 private:
  std::shared_ptr<prometheus::Collectable> metrics_;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& addr,
                                                            std::shared_ptr<prometheus::Collectable> metrics) {
  // civetweb spells "every interface" as a bare port.
  std::string ports = addr.rfind(':', 0) == 0 ? addr.substr(1) : addr;
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->addr_ = addr;
  s->metrics_handler_ = std::make_unique<Handler>(std::move(metrics));
  s->health_handler_ = std::make_unique<Handler>(nullptr);
  try {
    s->server_ = std::make_unique<CivetServer>(
        std::vector<std::string>{"listening_ports", ports, "num_threads", "2", "request_timeout_ms", "10000"});
  } catch (const CivetException& e) {
    return Status::Usage(fmt::format("cannot serve metrics on {}: the address is in use or not local ({})", addr,
                                     e.what()));
  }
  s->server_->addHandler("/metrics", s->metrics_handler_.get());
  s->server_->addHandler("/healthz", s->health_handler_.get());
  auto bound = s->server_->getListeningPorts();
  if (!bound.empty()) s->port_ = bound.front();
  return s;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->close();
}

}  // namespace lorry::metrics
