#include "replication/decode_only.h"

#include <chrono>

#include <fmt/format.h>

#include "daemon/daemon.h"
#include "pg/replication_conn.h"
#include "protocol/pgoutput.h"
#include "pg/quote.h"
#include "protocol/walsender.h"

namespace lorry::replication {

Result<DecodeOnlyStats> DecodeOnly(const DecodeOnlyOptions& options, const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  // Decoding confirms what it reads: on a subscription's slot that would
  // make the provider forget changes the subscriber never applied.
  if (options.slot.rfind("lorry_", 0) == 0)
    return Status::Usage(fmt::format(
        "refusing to decode slot {}: it belongs to a lorry subscription and decoding advances it, so its changes "
        "would never reach the subscriber. Decode a slot of your own: SELECT "
        "pg_create_logical_replication_slot('bench', 'pgoutput')",
        options.slot));
  LORRY_ASSIGN_OR_RETURN(auto provider, pg::PgConn::Connect(options.provider, {{}, "provider"}));
  Lsn until = options.until;
  if (!until.valid()) {
    LORRY_ASSIGN_OR_RETURN(auto insert, provider.QueryValue("SELECT pg_current_wal_insert_lsn()"));
    until = Lsn::Parse(insert.value_or("")).value_or(Lsn());
  }
  LORRY_ASSIGN_OR_RETURN(auto start_text, provider.QueryValue("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                                                              "WHERE slot_name = $1",
                                                              {options.slot}));
  if (!start_text) return Status::Precondition(fmt::format("no replication slot {} on the provider", options.slot));
  int proto = daemon::ProtocolVersionFor(provider.server_version());
  LORRY_ASSIGN_OR_RETURN(auto repl, pg::ReplicationConn::Connect(options.provider, "provider"));
  Lsn start = Lsn::Parse(*start_text).value_or(Lsn());
  LORRY_RETURN_IF_ERROR(repl.StartReplication(
      options.slot, start,
      fmt::format("proto_version '{}', publication_names {}", proto, pg::QuoteLiteral(options.publications))));
  protocol::PgOutputDecoder decoder(proto);
  DecodeOnlyStats st;
  auto began = Clock::now();
  auto last_data = began;
  auto last_feedback = began;
  Lsn confirmed = start;
  while (!stop.load()) {
    LORRY_ASSIGN_OR_RETURN(auto data, repl.Read(std::chrono::milliseconds(100)));
    if (data) {
      last_data = Clock::now();
      LORRY_ASSIGN_OR_RETURN(auto frame, protocol::ParseWalSenderFrame(*data));
      if (auto* x = std::get_if<protocol::XLogData>(&frame)) {
        st.bytes += static_cast<int64_t>(x->data.size());
        LORRY_ASSIGN_OR_RETURN(auto msg, decoder.Decode(x->data));
        if (auto* c = std::get_if<protocol::CommitMsg>(&msg)) {
          st.transactions++;
          confirmed = c->end_lsn;
        } else if (std::holds_alternative<protocol::InsertMsg>(msg) ||
                   std::holds_alternative<protocol::UpdateMsg>(msg) ||
                   std::holds_alternative<protocol::DeleteMsg>(msg)) {
          st.changes++;
        }
      } else if (auto* k = std::get_if<protocol::PrimaryKeepalive>(&frame)) {
        confirmed = std::max(confirmed, k->wal_end);
        if (k->reply_requested) last_feedback = Clock::time_point();
      }
    }
    if (confirmed >= until) break;
    if (Clock::now() - last_feedback > std::chrono::seconds(1)) {
      auto now = protocol::ToPgMicros(std::chrono::system_clock::now());
      LORRY_RETURN_IF_ERROR(repl.Send(protocol::BuildStandbyStatusUpdate(confirmed, confirmed, confirmed, now, false)));
      last_feedback = Clock::now();
    }
    if (Clock::now() - last_data > std::chrono::duration<double>(options.idle_timeout_seconds))
      return Status::Timeout(fmt::format("no data for {} s; reached {} of {}", options.idle_timeout_seconds,
                                         confirmed.ToString(), until.ToString()));
  }
  auto now = protocol::ToPgMicros(std::chrono::system_clock::now());
  (void)repl.Send(protocol::BuildStandbyStatusUpdate(confirmed, confirmed, confirmed, now, false));
  st.seconds = std::chrono::duration<double>(Clock::now() - began).count();
  st.reached = confirmed;
  return st;
}

}  // namespace lorry::replication
