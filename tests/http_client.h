// A minimal HTTP client for the tests of `lorry run`'s HTTP endpoint, and
// the port run logs it serves on.
#pragma once

#include <string>
#include <vector>

#include "fixture.h"

namespace lorry::test {

struct HttpResponse {
  int code = 0;  // 0: nothing answered (or no status line)
  std::string head;
  std::string body;
};

// Sends `request` as is to 127.0.0.1:port and reads until the server closes
// (or `timeout_seconds` pass).
HttpResponse HttpExchange(int port, const std::string& request, double timeout_seconds = 5);

// GET path (HTTP/1.0), with extra header lines ("Authorization: ...").
HttpResponse HttpGet(int port, const std::string& path, const std::vector<std::string>& headers = {});

// The port `run --metrics-addr HOST:0` logged it serves on (0 if not within 60 s).
int MetricsPort(LorryProcess* run);

}  // namespace lorry::test
