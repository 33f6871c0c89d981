// Content comparison for the demo (see verify.h).
#include "demo/verify.h"

#include <fmt/format.h>

#include "pg/connection.h"

namespace lorry::demo {

namespace {

Result<pg::PgConn> Connect(const std::string& conninfo, const char* role) {
  std::string options = std::string(pg::kTextSessionOptions) + " -c TimeZone=UTC";
  return pg::PgConn::Connect(conninfo, {{{"options", options}, {"application_name", "lorry_demo_verify"}}, role});
}

// Row count and md5 of the rows' text forms, sorted by that text.
Status Digest(pg::PgConn& conn, const pg::QualifiedName& table, int64_t* rows, std::string* md5) {
  std::string sql = fmt::format(
      "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), md5('')) FROM {} t",
      table.Quoted());
  LORRY_ASSIGN_OR_RETURN(auto res, conn.Exec(sql));
  *rows = res.GetInt(0, 0);
  *md5 = std::string(res.Get(0, 1));
  return Status::Ok();
}

}  // namespace

Result<std::vector<TableComparison>> CompareTables(const std::string& provider_conninfo,
                                                   const std::string& subscriber_conninfo,
                                                   const std::vector<pg::QualifiedName>& tables) {
  LORRY_ASSIGN_OR_RETURN(auto provider, Connect(provider_conninfo, "provider"));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, Connect(subscriber_conninfo, "subscriber"));
  std::vector<TableComparison> out;
  for (const auto& table : tables) {
    TableComparison c{table};
    LORRY_RETURN_IF_ERROR(Digest(provider, table, &c.provider_rows, &c.provider_md5)
                              .WithContext("reading " + table.Display() + " on the provider"));
    LORRY_RETURN_IF_ERROR(Digest(subscriber, table, &c.subscriber_rows, &c.subscriber_md5)
                              .WithContext("reading " + table.Display() + " on the subscriber"));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace lorry::demo
