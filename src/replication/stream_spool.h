// StreamSpool: the changes of in-progress transactions that pgoutput streams
// (option streaming = on, protocol >= 2, PostgreSQL >= 14), kept in files
// until the transaction's end: STREAM COMMIT replays them in order, STREAM
// ABORT discards them, or the part written since an aborted subtransaction
// began. One file per streamed top-level transaction; lorry's memory does not
// grow with a transaction's size.
//
// The files are a cache, never state: after a crash the provider streams the
// transactions again from the slot. They live in a directory of this process
// (lorry-spool-<pid> under the temp directory), removed when the spool is
// destroyed; directories left by dead processes are removed at start.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string_view>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::replication {

class StreamSpool {
 public:
  // `parent`: where the spool's own directory goes (the temp directory by default).
  explicit StreamSpool(std::filesystem::path parent = {});
  ~StreamSpool();
  StreamSpool(const StreamSpool&) = delete;
  StreamSpool& operator=(const StreamSpool&) = delete;

  // Appends one pgoutput message (as received) of streamed transaction
  // `xid`; `subxid` is the (sub)transaction the message carries.
  Status Append(Xid xid, Xid subxid, std::string_view message);
  // STREAM ABORT: the whole transaction when subxid == xid, else the
  // subtransaction and everything spooled after its first message.
  Status Abort(Xid xid, Xid subxid);
  // STREAM COMMIT: calls `apply` with each spooled message in order, then
  // forgets the transaction (also when `apply` fails).
  Status Replay(Xid xid, const std::function<Status(std::string_view)>& apply);

  size_t open_transactions() const { return files_.size(); }
  int64_t bytes() const { return bytes_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct File {
    std::FILE* f = nullptr;
    int64_t size = 0;
    std::map<Xid, int64_t> subxact_start;  // first offset of each subtransaction seen
  };
  Status Open(Xid xid, File* file);
  void Close(Xid xid);
  std::filesystem::path PathOf(Xid xid) const;

  std::filesystem::path dir_;
  std::map<Xid, File> files_;
  int64_t bytes_ = 0;
};

}  // namespace lorry::replication
