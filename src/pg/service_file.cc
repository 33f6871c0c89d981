#include "pg/service_file.h"

#include <libpq-fe.h>

#include <fmt/format.h>

#include "pg/conninfo.h"

namespace lorry::pg {

Result<std::string> ServiceFileText(std::string_view conninfo, std::string_view service) {
  LORRY_RETURN_IF_ERROR(ValidateConninfo(conninfo, "connection string"));
  std::string copy(conninfo);
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(copy.c_str(), &err);
  if (err) PQfreemem(err);
  if (opts == nullptr) return Status::Usage("connection string does not parse");
  std::string text = fmt::format("[{}]\n", service);
  Status bad;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || std::string_view(o->keyword) == "service") continue;
    std::string_view v = o->val;
    if (v.find_first_of("\r\n") != std::string_view::npos) {
      bad = Status::Usage(fmt::format("connection string: the value of {} holds a line break", o->keyword));
      break;
    }
    text += fmt::format("{}={}\n", o->keyword, v);
  }
  PQconninfoFree(opts);
  if (!bad.ok()) return bad;
  return text;
}

}  // namespace lorry::pg
