// Why civetweb is driven by hand here rather than through prometheus-cpp's
// Exposer: the Exposer serves only registered collectables (text format)
// under their URIs. lorry also serves the status page (HTML), its JSON,
// /healthz and /readyz with their own status codes, answers 404/405 for
// the rest, and checks basic authentication on all but /healthz; the
// Exposer has no way to add such handlers. Both use the same civetweb, so
// the hand version costs one dispatching handler and the options below.
#include "metrics/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <strings.h>

#include <cerrno>
#include <cstring>

#include <CivetServer.h>
#include <fmt/format.h>

namespace lorry::metrics {

namespace {

std::string Base64Decode(const std::string& in) {
  static const std::string kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    if (c == '=') break;
    size_t pos = kChars.find(c);
    if (pos == std::string::npos) return "";
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// Compares in time independent of where the strings differ.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

const char* Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

// HOST and PORT of "HOST:PORT", "[V6]:PORT" or ":PORT".
std::pair<std::string, std::string> SplitAddress(const std::string& addr) {
  size_t colon = addr.rfind(':');
  std::string host = addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, colon == std::string::npos ? "" : addr.substr(colon + 1)};
}

// Why `addr` cannot be bound, from a bind of our own (civetweb only says
// that it failed).
std::string BindProblem(const std::string& addr) {
  auto [host, port] = SplitAddress(addr);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return fmt::format("cannot resolve {}: {}", host, gai_strerror(rc));
  std::string problem = "civetweb could not listen there";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, a->ai_addr, a->ai_addrlen);
    int err = errno;
    close(fd);
    if (rc == 0) continue;
    if (err == EADDRINUSE)
      problem = fmt::format("port {} is already in use (another lorry run, or another exporter: `ss -ltnp "
                            "'sport = :{}'` shows which); choose another port with --metrics-addr or [metrics] addr",
                            port, port);
    else if (err == EADDRNOTAVAIL)
      problem = fmt::format("{} is not an address of this host", host);
    else if (err == EACCES)
      problem = fmt::format("port {} needs privileges (ports below 1024); choose a port above 1023", port);
    else
      problem = std::strerror(err);
    break;
  }
  freeaddrinfo(found);
  return problem;
}

}  // namespace

bool IsLoopbackAddress(const std::string& addr) {
  auto [host, port] = SplitAddress(addr);
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

bool BasicAuthMatches(const std::string& header, const std::string& user, const std::string& password) {
  static const std::string kBasic = "Basic ";
  if (header.size() <= kBasic.size() || strncasecmp(header.c_str(), kBasic.c_str(), kBasic.size()) != 0)
    return false;
  std::string given = Base64Decode(header.substr(kBasic.size()));
  return SameSecret(given, user + ":" + password);
}

class HttpServer::Handler : public CivetHandler {
 public:
  explicit Handler(HttpServerOptions options) : options_(std::move(options)) {}

  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handlePost(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handlePatch(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }
  bool handleOptions(CivetServer*, mg_connection* conn) override { return NotAllowed(conn); }

 private:
  bool NotAllowed(mg_connection* conn) {
    HttpResponse r{405, "text/plain; charset=utf-8", "only GET and HEAD are served here\n", {{"Allow", "GET, HEAD"}}};
    Send(conn, r, true);
    return true;
  }

  bool Serve(mg_connection* conn, bool with_body) {
    const mg_request_info* info = mg_get_request_info(conn);
    HttpRequest req;
    req.path = info->local_uri != nullptr ? info->local_uri : "/";
    if (info->query_string != nullptr) {
      std::string q = info->query_string;
      size_t start = 0;
      while (start <= q.size()) {
        size_t end = q.find('&', start);
        if (end == std::string::npos) end = q.size();
        std::string pair = q.substr(start, end - start);
        size_t eq = pair.find('=');
        std::string key = pair.substr(0, eq);
        std::string value = eq == std::string::npos ? "" : pair.substr(eq + 1);
        std::string k(key.size() + 1, '\0'), v(value.size() + 1, '\0');
        int kn = mg_url_decode(key.c_str(), static_cast<int>(key.size()), k.data(), static_cast<int>(k.size()), 1);
        int vn = mg_url_decode(value.c_str(), static_cast<int>(value.size()), v.data(), static_cast<int>(v.size()), 1);
        if (kn > 0) req.params[k.substr(0, kn)] = vn >= 0 ? v.substr(0, vn) : "";
        start = end + 1;
      }
    }
    if (!options_.basic_auth_user.empty() && req.path != "/healthz") {
      const char* auth = mg_get_header(conn, "Authorization");
      if (auth == nullptr || !BasicAuthMatches(auth, options_.basic_auth_user, options_.basic_auth_password)) {
        HttpResponse r{401, "text/plain; charset=utf-8", "authentication required\n",
                       {{"WWW-Authenticate", "Basic realm=\"lorry\", charset=\"UTF-8\""}}};
        Send(conn, r, with_body);
        return true;
      }
    }
    auto route = options_.routes.find(req.path);
    HttpResponse r;
    if (route == options_.routes.end()) {
      std::string paths;
      for (const auto& [p, _] : options_.routes) paths += (paths.empty() ? "" : ", ") + p;
      r = {404, "text/plain; charset=utf-8", fmt::format("no such page: {}; lorry serves {}\n", req.path, paths), {}};
    } else {
      try {
        r = route->second(req);
      } catch (const std::exception& e) {
        r = {500, "text/plain; charset=utf-8", fmt::format("{}: {}\n", req.path, e.what()), {}};
      }
    }
    Send(conn, r, with_body);
    return true;
  }

  static void Send(mg_connection* conn, const HttpResponse& r, bool with_body) {
    std::string head = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        r.code, Reason(r.code), r.content_type, r.body.size());
    for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
    head += "\r\n";
    mg_write(conn, head.data(), head.size());
    if (with_body) mg_write(conn, r.body.data(), r.body.size());
  }

  HttpServerOptions options_;
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& addr, HttpServerOptions options) {
  // civetweb spells "every interface" as a bare port.
  std::string ports = addr.rfind(':', 0) == 0 ? addr.substr(1) : addr;
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->addr_ = addr;
  s->handler_ = std::make_unique<Handler>(std::move(options));
  try {
    s->server_ = std::make_unique<CivetServer>(std::vector<std::string>{
        "listening_ports", ports,
        "num_threads", std::to_string(kThreads),
        "request_timeout_ms", std::to_string(kRequestTimeoutMs),
        "connection_queue", std::to_string(kQueue),
        "listen_backlog", std::to_string(kBacklog),
        "enable_keep_alive", "no",
        "max_request_size", "16384"});
  } catch (const CivetException& e) {
    return Status::Usage(fmt::format("cannot serve metrics on {}: {}", addr, BindProblem(addr)));
  }
  s->server_->addHandler("/", s->handler_.get());
  auto bound = s->server_->getListeningPorts();
  if (!bound.empty()) s->port_ = bound.front();
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->close();
}

}  // namespace lorry::metrics
